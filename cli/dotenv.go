package cli

import (
	"fmt"
	"regexp"
	"strings"
)

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseDotenv reads a .env file: KEY=VALUE lines, "export " allowed before
// the key, blank lines and # comments ignored. A value may be 'single'
// quoted (taken as is), "double" quoted (\n, \t, \", \\ escapes; may span
// lines) or bare (trailing " # comment" and spaces removed). A later key
// wins. Errors name the line and never show a value.
func parseDotenv(text string) (map[string]string, error) {
	out := map[string]string{}
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, rest, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !envKeyRE.MatchString(key) {
			return nil, fmt.Errorf("line %d is not KEY=VALUE", lineNo)
		}
		rest = strings.TrimLeft(rest, " \t")
		switch {
		case strings.HasPrefix(rest, "'"):
			end := strings.Index(rest[1:], "'")
			if end < 0 {
				return nil, fmt.Errorf("line %d: the value of %s has no closing '", lineNo, key)
			}
			if tail := strings.TrimSpace(rest[end+2:]); tail != "" && !strings.HasPrefix(tail, "#") {
				return nil, fmt.Errorf("line %d: unexpected text after the value of %s", lineNo, key)
			}
			out[key] = rest[1 : end+1]
		case strings.HasPrefix(rest, `"`):
			value, consumed, err := doubleQuoted(rest[1:], lines[i+1:])
			if err != nil {
				return nil, fmt.Errorf("line %d: the value of %s %s", lineNo, key, err)
			}
			i += consumed
			out[key] = value
		default:
			if j := strings.Index(rest, " #"); j >= 0 {
				rest = rest[:j]
			}
			out[key] = strings.TrimSpace(rest)
		}
	}
	return out, nil
}

// doubleQuoted reads a "..." value that starts in first and may continue on
// the following lines; it returns the value and how many more lines it used.
func doubleQuoted(first string, more []string) (string, int, error) {
	var b strings.Builder
	text, used := first, 0
	for {
		for i := 0; i < len(text); i++ {
			switch c := text[i]; c {
			case '\\':
				if i+1 == len(text) {
					b.WriteByte('\\')
					continue
				}
				i++
				switch text[i] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case 'r':
					b.WriteByte('\r')
				case '"', '\\', '$':
					b.WriteByte(text[i])
				default:
					b.WriteByte('\\')
					b.WriteByte(text[i])
				}
			case '"':
				if tail := strings.TrimSpace(text[i+1:]); tail != "" && !strings.HasPrefix(tail, "#") {
					return "", 0, fmt.Errorf("has unexpected text after its closing quote")
				}
				return b.String(), used, nil
			default:
				b.WriteByte(c)
			}
		}
		if used == len(more) {
			return "", 0, fmt.Errorf("has no closing \"")
		}
		b.WriteByte('\n')
		text = more[used]
		used++
	}
}
