//go:build !linux

package netattach

import "errors"

type netlinkPlumber struct{}

var errNotLinux = errors.New("attaching containers to the bridge needs Linux")

func (netlinkPlumber) attach(link) error   { return errNotLinux }
func (netlinkPlumber) detach(string) error { return nil }
func supported() error                     { return errNotLinux }
