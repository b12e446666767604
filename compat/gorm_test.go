package compat

import (
	"database/sql"
	"errors"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// entity maps llmspell.entities for GORM: the columns the scenario uses.
type entity struct {
	TenantID   string `gorm:"primaryKey"`
	ID         string `gorm:"primaryKey;type:uuid;default:gen_random_uuid()"`
	EntityType string
	Name       string
}

func (entity) TableName() string { return "llmspell.entities" }

// errRollback makes a transaction function roll back.
var errRollback = errors.New("roll back")

// runGORM: GORM with gorm.io/driver/postgres (pgx underneath) and database/sql's pool.
func runGORM(t *testing.T, tg *target) {
	ctx := opContext(t)
	db, err := gorm.Open(postgres.Open(tg.keywordDSN()), &gorm.Config{
		Logger: logger.Discard, // the steps report errors; the expected duplicate key is no news
	})
	failed(t, "connect", err)
	pool, err := db.DB()
	failed(t, "connect", err)
	defer pool.Close()
	db = db.WithContext(ctx)
	s := &summary{Client: "GORM " + moduleVersion("gorm.io/gorm") + " with gorm.io/driver/postgres " +
		moduleVersion("gorm.io/driver/postgres") + " (pgx " + moduleVersion("github.com/jackc/pgx/v5") + ")"}

	failed(t, "tenant", db.Raw("SHOW app.current_tenant_id").Row().Scan(&s.Tenant))
	for range 10 {
		var n int64
		failed(t, "reads", db.Model(&entity{}).Where("entity_type = ?", "seed").Count(&n).Error)
		s.Reads = append(s.Reads, int(n))
	}
	named := func(name string) *entity {
		return &entity{TenantID: tg.tenant, EntityType: "compat", Name: tg.tenant + "-" + name}
	}

	failed(t, "commit", db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(named("committed")).Error; err != nil {
			return err
		}
		err := tx.Transaction(func(tx *gorm.DB) error {
			if err := tx.Create(named("savepoint")).Error; err != nil {
				return err
			}
			return errRollback
		})
		if errors.Is(err, errRollback) {
			return nil
		}
		return errors.Join(err, errors.New("the savepoint was not rolled back"))
	}))

	err = db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(named("rolledback")).Error; err != nil {
			return err
		}
		return errRollback
	}, &sql.TxOptions{Isolation: sql.LevelSerializable})
	if !errors.Is(err, errRollback) {
		failed(t, "rollback", err)
	}

	err = db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(named("failed")).Error; err != nil {
			return err
		}
		duplicate := named("duplicate")
		duplicate.ID = tg.seedID
		return tx.Create(duplicate).Error
	})
	if s.ErrorCode = sqlState(err); s.ErrorCode == "" {
		t.Fatalf("step error: want a duplicate key, got %v", err)
	}

	failed(t, "after", db.Raw("SHOW app.current_tenant_id").Row().Scan(&s.TenantAfterError))
	failed(t, "after", db.Model(&entity{}).Where("entity_type = ?", "compat").Order("name").Pluck("name", &s.Names).Error)
	failed(t, "after", db.Model(&entity{}).Distinct("tenant_id").Order("tenant_id").Pluck("tenant_id", &s.Visible).Error)
	tg.check(t, s)
}
