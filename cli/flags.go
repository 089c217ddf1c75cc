package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// multi is a flag that may be given several times.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// errUsage marks a mistake in how a command was called (exit status 2).
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usagef(format string, args ...any) error { return errUsage{fmt.Sprintf(format, args...)} }

// newFlags is a flag set of a command that prints nothing itself: errors
// come back as one sentence.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse reads flags anywhere among the arguments (`wharf fn deploy NAME FILE
// --secret K=V` as well as flags first) and returns the positional
// arguments. After "--" everything is positional.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %s.", fs.Name(), strings.TrimSuffix(err.Error(), "."))
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse stops at the first positional argument, or after "--".
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// want checks the number of positional arguments.
func want(name string, pos []string, names ...string) error {
	if len(pos) != len(names) {
		if len(names) == 0 {
			return usagef("%s takes no arguments (got %q).", name, strings.Join(pos, " "))
		}
		return usagef("usage: wharf %s %s", name, strings.ToUpper(strings.Join(names, " ")))
	}
	return nil
}

// flagSet is a command's flag set (a name for option callbacks).
type flagSet = flag.FlagSet
