package config

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// configFileArg finds --config in args (or WHARF_CONFIG) before the flags
// are parsed, since the file's values must sit beneath env and flags.
func configFileArg(args []string, getenv func(string) string) string {
	path := getenv(EnvName("config"))
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, p := range []string{"--config=", "-config="} {
			if strings.HasPrefix(a, p) {
				path = strings.TrimPrefix(a, p)
			}
		}
		if (a == "--config" || a == "-config") && i+1 < len(args) {
			path = args[i+1]
		}
	}
	return path
}

// applyFile sets flags from a YAML mapping of flag names to values. An
// unknown name or a bad value is an error naming the file and key.
func applyFile(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for k, v := range m {
		if k == "config" {
			return fmt.Errorf("config file %s: a config file cannot name another (%q)", path, k)
		}
		f := fs.Lookup(k)
		if f == nil {
			return fmt.Errorf("config file %s: unknown setting %q (settings are named like the flags of `wharf %s --help`)", path, k, strings.TrimPrefix(fs.Name(), "wharf "))
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case nil:
			return fmt.Errorf("config file %s: setting %q has no value", path, k)
		default:
			s = fmt.Sprint(x)
		}
		if err := f.Value.Set(s); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return nil
}
