-- Trunks get a priority: twin legs and outbound calls try the highest first and fail over to
-- the next on 5xx/408 (dispatcher algorithm 8 orders a set by priority, highest first).
ALTER TABLE trunk ADD COLUMN priority integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 1000);

CREATE OR REPLACE FUNCTION trunk_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM dispatcher WHERE description = 'trunk:' || OLD.name;
        DELETE FROM address WHERE tag = 'trunk:' || OLD.name;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO dispatcher (setid, destination, flags, priority, attrs, description)
        VALUES (NEW.dispatcher_set, 'sip:' || host(NEW.host) || ':' || NEW.port, 0,
                NEW.priority, '', 'trunk:' || NEW.name);
        -- port 0: carriers send from more than one port, trust the address alone.
        INSERT INTO address (grp, ip_addr, mask, port, tag)
        VALUES (NEW.address_group, host(NEW.host), 32, 0, 'trunk:' || NEW.name);
    END IF;
    RETURN NULL;
END $$;

UPDATE trunk SET priority = priority;   -- re-sync the dispatcher rows (flags 0, priority)
