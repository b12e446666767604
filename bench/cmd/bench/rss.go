package main

import (
	"context"
	"time"
)

// settledRSS reads a process's resident set size until it has stayed within 1% for a second,
// or for at most 15 s: a server answers a client before it is done with what the answer
// needed (buffers released, goroutines ended), so the figure is read once it stops moving.
func settledRSS(ctx context.Context, pid int) (int64, error) {
	const (
		every  = 100 * time.Millisecond
		steady = time.Second
	)
	deadline := time.Now().Add(15 * time.Second)
	ref, err := rssKB(pid)
	if err != nil {
		return 0, err
	}
	since := time.Now()
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(every):
		}
		kb, err := rssKB(pid)
		if err != nil {
			return 0, err
		}
		if diff := kb - ref; diff > ref/100 || -diff > ref/100 {
			ref, since = kb, time.Now()
		}
		if time.Since(since) >= steady || time.Now().After(deadline) {
			return kb, nil
		}
	}
}
