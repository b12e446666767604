-- A little demo data for `make run`, written as the superuser (row-level security does not bind
-- it). Rerunning replaces it.
BEGIN;
DELETE FROM llmspell.entities WHERE properties @> '{"demo": true}';
DELETE FROM llmspell.vector_embeddings_384 WHERE metadata @> '{"demo": true}';

INSERT INTO llmspell.entities (tenant_id, id, entity_type, name, properties) VALUES
	('acme',   'a0000000-0000-4000-8000-000000000001', 'person',  'Wile E. Coyote', '{"demo": true}'),
	('acme',   'a0000000-0000-4000-8000-000000000002', 'person',  'Road Runner',    '{"demo": true}'),
	('acme',   'a0000000-0000-4000-8000-000000000003', 'product', 'Rocket skates',  '{"demo": true}'),
	('globex', 'b0000000-0000-4000-8000-000000000001', 'person',  'Hank Scorpio',   '{"demo": true}'),
	('globex', 'b0000000-0000-4000-8000-000000000002', 'person',  'Homer Simpson',  '{"demo": true}'),
	('initech','c0000000-0000-4000-8000-000000000001', 'person',  'Peter Gibbons',  '{"demo": true}');

INSERT INTO llmspell.relationships (tenant_id, source_id, target_id, relationship_type, properties) VALUES
	('acme',   'a0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000002', 'chases', '{"demo": true}'),
	('acme',   'a0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000003', 'buys',   '{"demo": true}'),
	('globex', 'b0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000002', 'employs','{"demo": true}');

-- Five documents per tenant with deterministic 384-dimension embeddings.
INSERT INTO llmspell.vector_embeddings_384 (tenant_id, scope, embedding, metadata)
SELECT t, 'docs',
	(SELECT array_agg(sin(i * g + length(t)) ORDER BY i) FROM generate_series(1, 384) i)::vector,
	jsonb_build_object('demo', true, 'title', t || ' document ' || g)
FROM unnest(ARRAY['acme', 'globex', 'initech']) t, generate_series(1, 5) g;
COMMIT;
