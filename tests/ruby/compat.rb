# ActiveRecord (ruby-pg underneath) with its defaults: the compatibility scenario of compat/.
#
#   ruby compat.rb
#
# Settings come from COMPAT_HOST, COMPAT_PORT, COMPAT_USER, COMPAT_PASSWORD, COMPAT_DATABASE,
# COMPAT_TENANT and COMPAT_SEED_ID (an entity of the tenant, used to provoke a duplicate key).
# Prints one JSON summary; on a failure prints the step, SQLSTATE and message and exits 1.
begin
  require 'active_record'
  require 'pg'
rescue LoadError => e
  abort "compat.rb: #{e.message}: run scripts/drivers-deps to install ruby-activerecord and ruby-pg"
end
require 'json'

TENANT = ENV.fetch('COMPAT_TENANT')

# The SQLSTATE of the PostgreSQL error behind e, if any.
def sqlstate(e)
  while e
    return e.result&.error_field(PG::Result::PG_DIAG_SQLSTATE) if e.is_a?(PG::Error)
    e = e.cause
  end
  nil
end

def step(name)
  yield
rescue StandardError => e
  state = sqlstate(e)
  abort "step #{name} failed: #{state ? "SQLSTATE #{state}: " : ''}#{e.class}: #{e.message}"
end

class Entity < ActiveRecord::Base
  self.table_name = 'llmspell.entities'
  self.primary_key = 'id'
end

def create(name, **attrs)
  Entity.create!(tenant_id: TENANT, entity_type: 'compat', name: "#{TENANT}-#{name}", **attrs)
end

step('connect') do
  ActiveRecord::Base.establish_connection(
    adapter: 'postgresql',
    host: ENV.fetch('COMPAT_HOST'), port: ENV.fetch('COMPAT_PORT').to_i,
    username: ENV.fetch('COMPAT_USER'), password: ENV.fetch('COMPAT_PASSWORD'),
    database: ENV.fetch('COMPAT_DATABASE')
  )
  ActiveRecord::Base.connection.verify!
end

summary = { client: "ActiveRecord #{ActiveRecord.version} with pg #{PG::VERSION}" }
summary[:tenant] = step('tenant') { Entity.connection.select_value('SHOW app.current_tenant_id') }
summary[:reads] = step('reads') { Array.new(10) { Entity.where(entity_type: 'seed').to_a.size } }

step('commit') do
  Entity.transaction do
    create('committed')
    Entity.transaction(requires_new: true) do
      create('savepoint')
      raise ActiveRecord::Rollback
    end
  end
end

step('rollback') do
  Entity.transaction(isolation: :serializable) do
    create('rolledback')
    raise ActiveRecord::Rollback
  end
end

summary[:error_code] = step('error') do
  Entity.transaction do
    create('failed')
    create('duplicate', id: ENV.fetch('COMPAT_SEED_ID'))
  end
  raise 'a duplicate key was accepted'
rescue ActiveRecord::RecordNotUnique => e
  sqlstate(e)
end

step('after') do
  summary[:tenant_after_error] = Entity.connection.select_value('SHOW app.current_tenant_id')
  summary[:names] = Entity.where(entity_type: 'compat').order(:name).pluck(:name)
  summary[:visible] = Entity.distinct.order(:tenant_id).pluck(:tenant_id)
end
step('close') { ActiveRecord::Base.connection_pool.disconnect! }

puts JSON.generate(summary)
