//go:build !linux

package wire

import "syscall"

const rawIOSupported = false

func rawRead(fd uintptr, p []byte) (int, syscall.Errno)  { panic("raw I/O is Linux only") }
func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) { panic("raw I/O is Linux only") }
