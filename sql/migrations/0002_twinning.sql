-- The twinning data model: subscribers, their twin ("My Numbers"), presence statuses
-- ("Manage Status"), trunks, and the call/handoff log. Rules live here as constraints, so a row
-- written by hand obeys them too.

CREATE TYPE license_tier AS ENUM ('basic', 'entry-ucc', 'standard-ucc', 'premium-ucc');
CREATE TYPE send_to AS ENUM ('ring-group', 'voicemail');

-- A North American geographic/mobile number in E.164: +1 NPA NXX XXXX, where NPA and NXX start
-- with 2-9, neither is N11, and NPA is not a premium-rate code (900, 976).
CREATE FUNCTION is_nanp_number(n text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT n ~ '^\+1[2-9][0-9]{2}[2-9][0-9]{6}$'
       AND substr(n, 4, 2) <> '11'
       AND substr(n, 7, 2) <> '11'
       AND substr(n, 3, 3) NOT IN ('900', '976')
       AND substr(n, 6, 3) <> '976'
$$;

CREATE TABLE subscriber (
    id serial PRIMARY KEY,
    extension text NOT NULL UNIQUE CHECK (extension ~ '^[0-9]{4}$'),
    did text NOT NULL UNIQUE CHECK (is_nanp_number(did)),
    display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 64
                                      AND display_name !~ '[\x00-\x1f"<>]'),
    -- auth_db reads these four columns; only digest hashes are stored, never the password.
    username varchar(64) NOT NULL,
    domain varchar(64) NOT NULL,
    ha1 varchar(128) NOT NULL CHECK (ha1 ~ '^[0-9a-f]{32}$'),
    ha1b varchar(128) NOT NULL CHECK (ha1b ~ '^[0-9a-f]{32}$'),
    license license_tier NOT NULL DEFAULT 'entry-ucc',
    voicemail_box text NOT NULL CHECK (voicemail_box ~ '^[0-9A-Za-z_.+-]{1,32}$'),
    ring_timeout integer NOT NULL DEFAULT 20 CHECK (ring_timeout BETWEEN 5 AND 300),
    current_status_id integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subscriber_account_idx UNIQUE (username, domain),
    CONSTRAINT subscriber_username_is_extension CHECK (username = extension)
);
INSERT INTO version (table_name, table_version) VALUES ('subscriber', 7);

CREATE TABLE status (
    id serial PRIMARY KEY,
    subscriber_id integer NOT NULL REFERENCES subscriber (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 40 AND name = btrim(name)),
    position integer NOT NULL DEFAULT 0,
    send_to send_to NOT NULL DEFAULT 'ring-group',
    ring_desk boolean NOT NULL DEFAULT true,
    ring_mobile boolean NOT NULL DEFAULT false,
    CONSTRAINT status_ring_group_not_empty CHECK (send_to <> 'ring-group' OR ring_desk OR ring_mobile),
    CONSTRAINT status_owner_idx UNIQUE (subscriber_id, id)
);
CREATE UNIQUE INDEX status_name_idx ON status (subscriber_id, lower(name));

-- The current status must be one of the subscriber's own (composite key), checked at commit so
-- a subscriber and its statuses can be created in one transaction.
ALTER TABLE subscriber ADD CONSTRAINT subscriber_current_status_fk
    FOREIGN KEY (id, current_status_id) REFERENCES status (subscriber_id, id)
    DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE twin (
    subscriber_id integer PRIMARY KEY REFERENCES subscriber (id) ON DELETE CASCADE,
    label text NOT NULL DEFAULT 'Mobile' CHECK (length(label) BETWEEN 1 AND 32),
    number text NOT NULL CHECK (is_nanp_number(number)),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Carrier gateways. Kamailio reads them through the dispatcher (where twin legs go) and
-- address (whose sources are trusted to call our DIDs) tables, which triggers keep in step.
CREATE TABLE trunk (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$'),
    host inet NOT NULL CHECK (family(host) = 4 AND masklen(host) = 32),
    port integer NOT NULL DEFAULT 5060 CHECK (port BETWEEN 1 AND 65535),
    dispatcher_set integer NOT NULL DEFAULT 1,
    address_group integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (host, port)
);

CREATE FUNCTION trunk_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM dispatcher WHERE description = 'trunk:' || OLD.name;
        DELETE FROM address WHERE tag = 'trunk:' || OLD.name;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        -- flags 2 = probing: a dead gateway is skipped until it answers OPTIONS again.
        INSERT INTO dispatcher (setid, destination, flags, priority, attrs, description)
        VALUES (NEW.dispatcher_set, 'sip:' || host(NEW.host) || ':' || NEW.port, 2, 0, '',
                'trunk:' || NEW.name);
        -- port 0: carriers send from more than one port, trust the address alone.
        INSERT INTO address (grp, ip_addr, mask, port, tag)
        VALUES (NEW.address_group, host(NEW.host), 32, 0, 'trunk:' || NEW.name);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER trunk_sync AFTER INSERT OR UPDATE OR DELETE ON trunk
    FOR EACH ROW EXECUTE FUNCTION trunk_sync();

-- Calls that passed through the proxy; ended_at IS NULL means the call is live.
CREATE TABLE call (
    id bigserial PRIMARY KEY,
    call_id text NOT NULL UNIQUE,
    subscriber_id integer REFERENCES subscriber (id) ON DELETE SET NULL,
    direction text NOT NULL CHECK (direction IN ('inbound', 'outbound', 'internal')),
    caller text NOT NULL,
    callee text NOT NULL,
    rang text[] NOT NULL DEFAULT '{}',        -- devices offered the call: desk, mobile, voicemail
    answered_by text CHECK (answered_by IN ('desk', 'mobile', 'voicemail', 'far')),
    started_at timestamptz NOT NULL DEFAULT now(),
    answered_at timestamptz,
    ended_at timestamptz,
    outcome text
);
CREATE INDEX call_live_idx ON call (subscriber_id) WHERE ended_at IS NULL;
CREATE INDEX call_started_idx ON call (started_at);

CREATE TABLE handoff (
    id bigserial PRIMARY KEY,
    call_id text NOT NULL REFERENCES call (call_id) ON DELETE CASCADE,
    from_device text NOT NULL CHECK (from_device IN ('desk', 'mobile')),
    to_device text NOT NULL CHECK (to_device IN ('desk', 'mobile') AND to_device <> from_device),
    requested_at timestamptz NOT NULL DEFAULT now(),
    answered_at timestamptz,
    completed_at timestamptz,
    outcome text NOT NULL DEFAULT 'pending'
        CHECK (outcome IN ('pending', 'completed', 'no-answer', 'declined', 'failed', 'refused')),
    switch_ms real
);
CREATE INDEX handoff_call_idx ON handoff (call_id);

-- Routing caches subscriber data per Kamailio worker; any change is announced so the next call
-- sees it without a restart (workers LISTEN on this channel).
CREATE FUNCTION notify_subscriber_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('twinning_subscriber_changed', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER subscriber_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON subscriber
    FOR EACH STATEMENT EXECUTE FUNCTION notify_subscriber_change();
CREATE TRIGGER status_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON status
    FOR EACH STATEMENT EXECUTE FUNCTION notify_subscriber_change();
CREATE TRIGGER twin_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON twin
    FOR EACH STATEMENT EXECUTE FUNCTION notify_subscriber_change();
