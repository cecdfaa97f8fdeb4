-- Toll fraud (docs/security.md "Numbers: NANP countries"): a twin or DID must be a US or
-- Canadian number, or one of a +1 country the site allows ([calls] allowed_nanp_countries); the
-- other countries of +1 (Jamaica, the Dominican Republic, Puerto Rico, ...) are billed at
-- international rates. twinning.numbers.country_refusal is the rule; this is its copy for rows
-- written by hand, and tests/integration/test_rules_in_sql.py checks that the two agree.
--
-- Both tables are copies written by `twinctl db migrate` (twinctl.stack.sync_nanp_countries, on
-- every run, `stack up` and `db setup` too): nanp_area_code of twinning/nanp_area_codes.py
-- (generated from phonenumbers), nanp_country_allowed of the site config, which the database
-- cannot read. Empty, they refuse every number: the safe side.
CREATE TABLE nanp_area_code (
    npa text PRIMARY KEY CHECK (npa ~ '^[2-9][0-9]{2}$'),
    region text NOT NULL CHECK (region ~ '^[A-Z]{2}$'),
    country text NOT NULL
);

CREATE TABLE nanp_country_allowed (
    region text PRIMARY KEY CHECK (region ~ '^[A-Z]{2}$')
);

-- Why a +1 number may not be a twin or DID (the same one line as Python's), or NULL.
CREATE FUNCTION nanp_country_refusal(n text) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN a.npa IS NULL THEN 'area code ' || x.npa || ' is not in service in North America'
        WHEN a.region IN ('US', 'CA') OR ok.region IS NOT NULL THEN NULL
        ELSE '+1 ' || a.npa || ' is ' || a.country || ': international rates, not allowed'
    END
    FROM (SELECT substr(n, 3, 3) AS npa) x
    LEFT JOIN nanp_area_code a ON a.npa = x.npa
    LEFT JOIN nanp_country_allowed ok ON ok.region = a.region
$$;

-- A trigger, not a CHECK: a CHECK is evaluated again on every update of the row and would have
-- to hold for the rows already there. The trigger judges only a number being written, so the
-- twins and DIDs stored before this rule stay (no data lost, the migration cannot fail on
-- them); the routing refuses to ring such a twin all the same (twinning.numbers), and
-- docs/security.md says how to list them. TG_ARGV[0]: the column holding the number.
CREATE FUNCTION nanp_country_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    number text := to_jsonb(NEW) ->> TG_ARGV[0];
    refusal text := nanp_country_refusal(number);
BEGIN
    IF refusal IS NOT NULL THEN
        RAISE EXCEPTION '%: %', number, refusal USING ERRCODE = 'check_violation',
            HINT = 'a site allows a country in [calls] allowed_nanp_countries, then runs twinctl db migrate';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER twin_number_country BEFORE INSERT OR UPDATE OF number ON twin
    FOR EACH ROW EXECUTE FUNCTION nanp_country_check('number');
CREATE TRIGGER subscriber_did_country BEFORE INSERT OR UPDATE OF did ON subscriber
    FOR EACH ROW EXECUTE FUNCTION nanp_country_check('did');

-- The web page writes twins ("My Numbers"): its trigger reads both tables as the web role.
GRANT SELECT ON nanp_area_code, nanp_country_allowed TO twinning_web;
