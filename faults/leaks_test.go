package faults

import (
	"bytes"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// baseline is what the process holds before a test starts its relay and proxy.
type baseline struct {
	goroutines, files int
}

func takeBaseline() baseline {
	n, _ := goroutines()
	return baseline{goroutines: n, files: openFiles()}
}

// goroutines counts the process's goroutines, and returns their stacks. The relay's are left
// out: toxiproxy 2.5 leaves a link's goroutines blocked after reset_peer has closed it, which
// says nothing about the proxy.
func goroutines() (int, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var count int
	var kept []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("/toxiproxy/")) {
			continue
		}
		count++
		kept = append(kept, string(g))
	}
	return count, strings.Join(kept, "\n\n")
}

// openFiles counts the process's open file descriptors: sockets included.
func openFiles() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

// verify waits up to 10 s for goroutines and open files to come back to the baseline, and
// fails t, with the goroutines still running, if they do not.
func (b baseline) verify(t *testing.T) {
	t.Helper()
	var count, files int
	var stacks string
	deadline := time.Now().Add(10 * time.Second)
	for {
		count, stacks = goroutines()
		files = openFiles()
		if count <= b.goroutines && files <= b.files {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("leak: %d goroutines and %d open files 10 s after the test, %d and %d before it; goroutines:\n%s",
		count, files, b.goroutines, b.files, stacks)
}
