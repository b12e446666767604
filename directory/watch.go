package directory

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// changePage is how many change-log rows one query reads; a bulk load is read in pages.
const changePage = 10_000

var changesQuery = `SELECT version, name, (SELECT min(version) FROM ` + userChanges + `) FROM ` + userChanges + `
	WHERE version > $1 ORDER BY version LIMIT ` + strconv.Itoa(changePage)

// watch reads the change log every Refresh until ctx ends. head is the last version seen.
func (d *Directory) watch(ctx context.Context, head int64) {
	tick := time.NewTicker(d.opts.Refresh)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		next, err := d.poll(ctx, head)
		head = next
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				d.opts.Log.Warn().Err(err).Msg("tenant directory: cannot read the change log; cached users keep being served until it can")
			}
			failing = true
		case failing:
			d.opts.Log.Info().Msg("tenant directory: reading the change log again")
			failing = false
		}
	}
}

// poll reads the changes after head, invalidates and reports their names, and returns the new
// head (as far as it got, on an error).
func (d *Directory) poll(ctx context.Context, head int64) (int64, error) {
	qctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	var newest int64
	if err := d.pool.QueryRow(qctx, headQuery).Scan(&newest); err != nil {
		return head, explain(err)
	}
	if newest == head {
		return head, nil
	}
	if newest < head {
		// The log went back (a database restored from a backup): what changed is unknown.
		d.lostTrack()
		return newest, nil
	}
	for first := true; ; first = false {
		rows, err := d.pool.Query(qctx, changesQuery, head)
		if err != nil {
			return head, explain(err)
		}
		var names []string
		var version, oldest int64
		var name string
		last := head
		for rows.Next() {
			if err := rows.Scan(&version, &name, &oldest); err != nil {
				rows.Close()
				return head, explain(err)
			}
			if first && len(names) == 0 && oldest > head+1 {
				// Rows after head may have been pruned before this instance read them.
				d.lostTrack()
			}
			names = append(names, name)
			last = version
		}
		if err := rows.Err(); err != nil {
			return head, explain(err)
		}
		if len(names) > 0 {
			d.cache.invalidate(names)
			d.changed.push(names...)
		}
		head = last
		if len(names) < changePage {
			return head, nil
		}
	}
}

// lostTrack forgets every cached answer and reports every user that was cached, since any of
// them may have changed unseen.
func (d *Directory) lostTrack() {
	d.changed.push(d.cache.flush()...)
}

// forward hands the queued names to Changes() until ctx ends, then closes it.
func (d *Directory) forward(ctx context.Context) {
	defer close(d.changes)
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.changed.wake:
		}
		for _, name := range d.changed.take() {
			select {
			case d.changes <- name:
			case <-ctx.Done():
				return
			}
		}
	}
}

// queue holds the names not yet received from Changes(), each once: it never blocks the watcher,
// and it is bounded by the number of users.
type queue struct {
	mu     sync.Mutex
	names  []string
	queued map[string]bool
	wake   chan struct{}
}

func newQueue() *queue {
	return &queue{queued: map[string]bool{}, wake: make(chan struct{}, 1)}
}

func (q *queue) push(names ...string) {
	q.mu.Lock()
	for _, name := range names {
		if !q.queued[name] {
			q.queued[name] = true
			q.names = append(q.names, name)
		}
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	names := q.names
	q.names = nil
	clear(q.queued)
	return names
}
