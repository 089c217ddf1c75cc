package builder

import (
	"regexp"
	"strconv"
	"strings"
)

// failure is why a build failed, as recorded for the API.
type failure struct {
	Message string
	// Permanent failures are properties of the module (it does not exist,
	// its peers conflict, it is too large): retrying cannot help.
	Permanent bool
}

var npmCodeRE = regexp.MustCompile(`(?m)^npm (?:error|ERR!) code (\S+)`)

// permanentCodes are npm error codes that depend only on the module and the
// registry's content.
var permanentCodes = map[string]bool{
	"E400": true, "E401": true, "E403": true, "E404": true, "E405": true, "E410": true, "E422": true,
	"ETARGET":              true, // no such version
	"ERESOLVE":             true, // dependency or peer conflict
	"EINVALIDTAGNAME":      true,
	"EINVALIDPACKAGENAME":  true,
	"EUNSUPPORTEDPROTOCOL": true,
	"ENOVERSIONS":          true,
	"EBADPLATFORM":         true, // os/cpu fields exclude linux-x64
	"ENOTSUP":              true,
	"EJSONPARSE":           true,
	"E_PACKAGE_JSON_PARSE": true,
}

// classifyNPM classifies a failed npm run from its exit code and output:
// the npm error code when it printed one decides; anything else (network
// errors, registry 5xx, a crash) is transient and retried.
func classifyNPM(exit int, oomKilled bool, log string) failure {
	if oomKilled {
		return failure{Message: "npm ran out of memory (raise --build-memory)", Permanent: true}
	}
	code := ""
	if m := npmCodeRE.FindStringSubmatch(log); m != nil {
		code = m[1]
	}
	msg := "npm install failed (exit " + strconv.Itoa(exit) + ")"
	if code != "" {
		msg += ": " + code
	}
	if detail := firstNPMError(log); detail != "" {
		msg += ": " + detail
	}
	return failure{Message: msg, Permanent: permanentCodes[code]}
}

// firstNPMError returns the first "npm error" line that is not the code line
// nor a pointer to the debug log, without its prefix.
func firstNPMError(log string) string {
	for line := range strings.SplitSeq(log, "\n") {
		rest, ok := strings.CutPrefix(line, "npm error ")
		if !ok {
			rest, ok = strings.CutPrefix(line, "npm ERR! ")
		}
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if rest == "" || strings.HasPrefix(rest, "code ") || strings.HasPrefix(rest, "A complete log") ||
			strings.HasPrefix(rest, "errno ") {
			continue
		}
		if len(rest) > 300 {
			rest = rest[:300] + "…"
		}
		return rest
	}
	return ""
}
