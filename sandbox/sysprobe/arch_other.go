//go:build linux && !amd64

package main

func archProbes() []probe { return nil }
