package main

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// load is a set of client goroutines, each running one kind of operation in a loop until the
// load is stopped, and logging when each operation ended, how long it took and how it failed.
type load struct {
	workers  int
	started  atomic.Int64
	ready    chan struct{} // closed once every worker has started its first operation
	stopping atomic.Bool
	cancel   context.CancelFunc
	done     sync.WaitGroup
	logs     []opLog
}

// worker is one client of a load: it calls log.begin once ready (connected), then loops while
// log.running(), recording each operation.
type worker func(ctx context.Context, log *opLog)

type opRecord struct {
	end  time.Time
	took time.Duration
	err  error
}

// opLog is one worker's record; only that worker writes it until the load has stopped.
type opLog struct {
	l     *load
	begun bool
	ops   []opRecord
}

func (o *opLog) begin() {
	if o.begun {
		return
	}
	o.begun = true
	if o.l.started.Add(1) == int64(o.l.workers) {
		close(o.l.ready)
	}
}

func (o *opLog) running(ctx context.Context) bool { return ctx.Err() == nil && !o.l.stopping.Load() }

func (o *opLog) record(start time.Time, err error) {
	end := time.Now()
	o.ops = append(o.ops, opRecord{end: end, took: end.Sub(start), err: err})
}

// startLoad starts workers copies of w.
func startLoad(ctx context.Context, workers int, w worker) *load {
	ctx, cancel := context.WithCancel(ctx)
	l := &load{workers: workers, ready: make(chan struct{}), cancel: cancel, logs: make([]opLog, workers)}
	for i := range l.logs {
		l.logs[i].l = l
		l.done.Go(func() {
			defer l.logs[i].begin() // a worker that gave up early still counts as started
			w(ctx, &l.logs[i])
		})
	}
	return l
}

// waitReady waits until every worker has started, for at most a minute.
func (l *load) waitReady(ctx context.Context) bool {
	select {
	case <-l.ready:
		return true
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
	return false
}

// stop asks the workers to finish the operation in hand and waits for them; after grace it
// cancels what is still running.
func (l *load) stop(grace time.Duration) {
	l.stopping.Store(true)
	finished := make(chan struct{})
	go func() {
		l.done.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(grace):
		l.cancel()
		<-finished
	}
	l.cancel()
}

// loadFigures sum up the operations that ended inside a window.
type loadFigures struct {
	Seconds      float64  `json:"seconds"`
	Ops          int      `json:"ops"`
	PerSecond    float64  `json:"per_second"`
	P50MS        float64  `json:"p50_ms"`
	P99MS        float64  `json:"p99_ms"`
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// figures are the load's operations that ended between from and to. Call it after stop.
func (l *load) figures(from, to time.Time) loadFigures {
	f := loadFigures{Seconds: to.Sub(from).Seconds()}
	var ms []float64
	for _, log := range l.logs {
		for _, op := range log.ops {
			if op.end.Before(from) || op.end.After(to) {
				continue
			}
			if op.err != nil {
				f.Errors++
				if msg := op.err.Error(); len(f.ErrorSamples) < 3 && !slices.Contains(f.ErrorSamples, msg) {
					f.ErrorSamples = append(f.ErrorSamples, msg)
				}
				continue
			}
			f.Ops++
			ms = append(ms, float64(op.took.Microseconds())/1000)
		}
	}
	f.PerSecond = float64(f.Ops) / f.Seconds
	f.P50MS, f.P99MS = percentile(ms, 50), percentile(ms, 99)
	return f
}

// connectionWorker keeps one connection to t (opening it again when it breaks) and runs op on
// it in a loop. An operation's time leaves out the connection's.
func connectionWorker(t target, op func(context.Context, *pgx.Conn) error) worker {
	return func(ctx context.Context, log *opLog) {
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		for log.running(ctx) {
			if conn == nil || conn.IsClosed() {
				start := time.Now()
				c, err := pgx.Connect(ctx, t.url())
				if err != nil {
					log.begin()
					log.record(start, err)
					pause(ctx, 50*time.Millisecond) // not a synchronisation: keeps a refused client from spinning
					continue
				}
				conn = c
			}
			log.begin()
			start := time.Now()
			log.record(start, op(ctx, conn))
		}
	}
}

// loginWorker connects to t, runs one statement and disconnects, in a loop.
func loginWorker(t target) worker {
	return func(ctx context.Context, log *opLog) {
		log.begin()
		for log.running(ctx) {
			start := time.Now()
			conn, err := pgx.Connect(ctx, t.url())
			if err == nil {
				_, err = conn.Exec(ctx, "SELECT 1")
				conn.Close(ctx)
			}
			log.record(start, err)
		}
	}
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
