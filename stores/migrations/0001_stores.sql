-- The audit trail, safety concerns and change-feed cursors (issue 24). Run by `ucgw migrate` as the owning
-- role (UCGW_DATABASE_MIGRATE_URL); the gateway's runtime role gets `ucgw_runtime`'s privileges only.

DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ucgw_runtime') THEN  -- a DBA may have made it already
        CREATE ROLE ucgw_runtime NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- roles are per server: another database made it
END $$;

-- Append-only: the runtime role may INSERT and SELECT, nothing else; the triggers refuse UPDATE and DELETE
-- by anyone but a role that drops them first. `id` is the one order of every replica's events; each writer
-- (one gateway process) keeps its own hash chain (`writer`, `seq`), so no replica waits on another's lock.
CREATE TABLE audit_event (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time text NOT NULL,
    request_id text NOT NULL,
    subject text NOT NULL,
    role text NOT NULL,
    client text NOT NULL,
    a_number text NOT NULL,
    outcome text NOT NULL,
    sections_returned text NOT NULL,
    sections_denied text NOT NULL,
    sections_failed text NOT NULL,
    purpose text,
    office text,
    writer text NOT NULL,
    seq bigint NOT NULL,
    prev_hash text NOT NULL,
    mac text NOT NULL,
    UNIQUE (writer, seq)
);
CREATE INDEX audit_by_a_number ON audit_event (a_number, time);
CREATE INDEX audit_by_subject ON audit_event (subject, time);
CREATE INDEX audit_by_time ON audit_event (time);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
GRANT SELECT, INSERT ON audit_event TO ucgw_runtime;

CREATE TABLE safety_concern (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    a_number text NOT NULL,
    severity text NOT NULL,
    category text NOT NULL,
    description text NOT NULL,
    field_office text,
    routed_by text NOT NULL,
    status text NOT NULL CHECK (status IN ('OPEN', 'ACKNOWLEDGED', 'RESOLVED')),
    reported_by text NOT NULL,
    reporter_role text NOT NULL,
    reporter_client text,
    reported_at double precision NOT NULL,
    acknowledged_by text,
    acknowledged_at double precision,
    acknowledgement_note text,
    resolved_by text,
    resolved_at double precision,
    resolution text
);
-- office names compare case-insensitively (as the SQLite store's COLLATE NOCASE)
CREATE INDEX concerns_office_status ON safety_concern (lower(field_office), status, seq);
CREATE INDEX concerns_a_number ON safety_concern (a_number, seq);
GRANT SELECT, INSERT, UPDATE ON safety_concern TO ucgw_runtime;

-- Where each source's change feed was left, and the fencing epoch of the leader that wrote it: a write
-- carrying an older epoch than the row's is refused.
CREATE TABLE feed_cursor (
    source text PRIMARY KEY,
    cursor text,
    epoch bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON feed_cursor TO ucgw_runtime;
