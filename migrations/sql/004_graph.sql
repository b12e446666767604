-- A bi-temporal knowledge graph. Each row carries two time ranges:
--   valid time:       when the fact held in the world;
--   transaction time: when the database knew it (closed, never deleted, when superseded).
-- Relationships point at entities of the same tenant: their foreign keys include tenant_id, and
-- row-level security makes every inserted row carry the session's tenant, so no row can point
-- into another tenant.
SET LOCAL ROLE {{.owner}};

CREATE TABLE {{.schema}}.entities (
	tenant_id              text        NOT NULL CHECK (tenant_id <> ''),
	id                     uuid        NOT NULL DEFAULT gen_random_uuid(),
	entity_type            text        NOT NULL,
	name                   text        NOT NULL,
	properties             jsonb       NOT NULL DEFAULT '{}',
	valid_time_start       timestamptz NOT NULL DEFAULT now(),
	valid_time_end         timestamptz NOT NULL DEFAULT 'infinity',
	transaction_time_start timestamptz NOT NULL DEFAULT now(),
	transaction_time_end   timestamptz NOT NULL DEFAULT 'infinity',
	created_at             timestamptz NOT NULL DEFAULT now(),
	updated_at             timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id),
	CONSTRAINT entities_valid_time CHECK (valid_time_start < valid_time_end),
	CONSTRAINT entities_transaction_time CHECK (transaction_time_start < transaction_time_end)
);
CREATE INDEX entities_type ON {{.schema}}.entities (tenant_id, entity_type);
CREATE INDEX entities_valid_range ON {{.schema}}.entities
	USING gist (tstzrange(valid_time_start, valid_time_end));
CREATE INDEX entities_transaction_range ON {{.schema}}.entities
	USING gist (tstzrange(transaction_time_start, transaction_time_end));

CREATE TABLE {{.schema}}.relationships (
	tenant_id              text        NOT NULL CHECK (tenant_id <> ''),
	id                     uuid        NOT NULL DEFAULT gen_random_uuid(),
	source_id              uuid        NOT NULL,
	target_id              uuid        NOT NULL,
	relationship_type      text        NOT NULL,
	properties             jsonb       NOT NULL DEFAULT '{}',
	valid_time_start       timestamptz NOT NULL DEFAULT now(),
	valid_time_end         timestamptz NOT NULL DEFAULT 'infinity',
	transaction_time_start timestamptz NOT NULL DEFAULT now(),
	transaction_time_end   timestamptz NOT NULL DEFAULT 'infinity',
	created_at             timestamptz NOT NULL DEFAULT now(),
	updated_at             timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id),
	CONSTRAINT relationships_source FOREIGN KEY (tenant_id, source_id)
		REFERENCES {{.schema}}.entities (tenant_id, id) ON DELETE CASCADE,
	CONSTRAINT relationships_target FOREIGN KEY (tenant_id, target_id)
		REFERENCES {{.schema}}.entities (tenant_id, id) ON DELETE CASCADE,
	CONSTRAINT relationships_valid_time CHECK (valid_time_start < valid_time_end),
	CONSTRAINT relationships_transaction_time CHECK (transaction_time_start < transaction_time_end)
);
CREATE INDEX relationships_source ON {{.schema}}.relationships (tenant_id, source_id, relationship_type);
CREATE INDEX relationships_target ON {{.schema}}.relationships (tenant_id, target_id, relationship_type);
CREATE INDEX relationships_valid_range ON {{.schema}}.relationships
	USING gist (tstzrange(valid_time_start, valid_time_end));
CREATE INDEX relationships_transaction_range ON {{.schema}}.relationships
	USING gist (tstzrange(transaction_time_start, transaction_time_end));

{{.rls.Table "entities"}}
{{.rls.Table "relationships"}}
GRANT SELECT, INSERT, UPDATE, DELETE ON {{.schema}}.entities, {{.schema}}.relationships TO {{.app}};

RESET ROLE;
