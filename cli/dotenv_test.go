package cli

import (
	"maps"
	"strings"
	"testing"
)

func TestParseDotenv(t *testing.T) {
	cases := []struct {
		name, in string
		want     map[string]string
		err      string
	}{
		{"empty", "", map[string]string{}, ""},
		{"plain", "A=1\nB = two words \n", map[string]string{"A": "1", "B": "two words"}, ""},
		{"comments and blanks", "# c\n\nA=1 # trailing\n  # indented\n", map[string]string{"A": "1"}, ""},
		{"hash without space stays", "URL=http://x/#frag", map[string]string{"URL": "http://x/#frag"}, ""},
		{"export", "export TOKEN=abc", map[string]string{"TOKEN": "abc"}, ""},
		{"single quoted as is", `A='a \n $b # c'`, map[string]string{"A": `a \n $b # c`}, ""},
		{"double quoted escapes", `A="x\ny\t\"q\" \\ \$"`, map[string]string{"A": "x\ny\t\"q\" \\ $"}, ""},
		{"double quoted multi-line", "KEY=\"-----BEGIN\nline2\n-----END\"\nB=2", map[string]string{"KEY": "-----BEGIN\nline2\n-----END", "B": "2"}, ""},
		{"empty values", "A=\nB=''\nC=\"\"", map[string]string{"A": "", "B": "", "C": ""}, ""},
		{"equals in value", "A=b=c", map[string]string{"A": "b=c"}, ""},
		{"later wins", "A=1\nA=2", map[string]string{"A": "2"}, ""},
		{"CRLF", "A=1\r\nB=2\r\n", map[string]string{"A": "1", "B": "2"}, ""},
		{"no equals", "A=1\nJUSTKEY\n", nil, "line 2 is not KEY=VALUE"},
		{"bad key", "1A=x", nil, "line 1 is not KEY=VALUE"},
		{"unclosed single", "A='x", nil, "line 1: the value of A has no closing '"},
		{"unclosed double", "A=\"x\nB=2", nil, "line 1: the value of A has no closing \""},
		{"text after quote", `A="x" y`, nil, "line 1: the value of A has unexpected text after its closing quote"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseDotenv(c.in)
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				if strings.Contains(err.Error(), "x") && strings.Contains(c.in, "x") && !strings.Contains(c.err, "x") {
					t.Fatalf("error shows a value: %v", err)
				}
				return
			}
			if err != nil || !maps.Equal(got, c.want) {
				t.Fatalf("got %q %v, want %q", got, err, c.want)
			}
		})
	}
}
