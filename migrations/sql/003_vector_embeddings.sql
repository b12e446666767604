-- One table per embedding width, as the models that produce them come in these sizes.
-- Every table starts with tenant_id so its primary key, and so every unique check, stays inside
-- one tenant: a duplicate key can never reveal that another tenant holds a row.
SET LOCAL ROLE {{.owner}};
{{range $dims := list 384 768 1536 3072}}
CREATE TABLE {{$.schema}}.vector_embeddings_{{$dims}} (
	tenant_id  text        NOT NULL CHECK (tenant_id <> ''),
	id         uuid        NOT NULL DEFAULT gen_random_uuid(),
	scope      text        NOT NULL DEFAULT '',
	embedding  vector({{$dims}}) NOT NULL,
	metadata   jsonb       NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id)
);
CREATE INDEX vector_embeddings_{{$dims}}_scope ON {{$.schema}}.vector_embeddings_{{$dims}} (tenant_id, scope);
{{- if le $dims 2000}}
CREATE INDEX vector_embeddings_{{$dims}}_hnsw ON {{$.schema}}.vector_embeddings_{{$dims}}
	USING hnsw (embedding vector_cosine_ops);
{{- else}}
-- HNSW indexes vector only up to 2000 dimensions; half precision goes to 4000. Query with
-- ORDER BY embedding::halfvec({{$dims}}) <=> $1::halfvec({{$dims}}) to use this index.
CREATE INDEX vector_embeddings_{{$dims}}_hnsw ON {{$.schema}}.vector_embeddings_{{$dims}}
	USING hnsw ((embedding::halfvec({{$dims}})) halfvec_cosine_ops);
{{- end}}
{{$.rls.Table (printf "vector_embeddings_%d" $dims)}}
GRANT SELECT, INSERT, UPDATE, DELETE ON {{$.schema}}.vector_embeddings_{{$dims}} TO {{$.app}};
{{end}}

RESET ROLE;
