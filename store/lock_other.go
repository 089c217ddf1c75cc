//go:build !unix

package store

import (
	"errors"
	"os"
)

func lockDataDir(dir string) (*os.File, error) {
	return nil, errors.New("store: embedded store is supported on Unix systems only")
}

func unlockDataDir(f *os.File) {}
