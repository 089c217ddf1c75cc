// Package compiler prepares a function's code at deploy time, the way webtask
// did: code starting with 'use latest' may use ES modules (import/export) and
// syntax newer than the runtime's node, and is transformed to CommonJS with
// esbuild once per version; any code is checked for syntax errors, so a broken
// function is refused at deploy with its line and column instead of failing on
// its first request.
package compiler

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/evanw/esbuild/pkg/api"
)

// RuntimeNode is the major version of node in the runtime image: syntax it
// runs natively is left as written.
const RuntimeNode = "20"

// SyntaxError is code that cannot be compiled. Line and Column are 1-based;
// Column counts characters.
type SyntaxError struct {
	Line, Column int
	Message      string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Message)
}

// useLatestRE: 'use latest' (either quotes) as the very first statement,
// only whitespace before it, ended like a directive.
var useLatestRE = regexp.MustCompile(`^\s*(?:'use latest'|"use latest")\s*(?:;|\n|\r|$)`)

// UsesLatest reports whether code opts into modern syntax with 'use latest'.
func UsesLatest(code string) bool {
	return useLatestRE.MatchString(strings.TrimPrefix(code, "\ufeff"))
}

// Compile checks code and returns what the runner must run instead of it, or
// "" when code runs as written. It returns a *SyntaxError when code cannot
// compile.
//
// Code without 'use latest' is only checked. 'use latest' code is left as
// written too when node runs it as is (no import/export, no syntax newer than
// the runtime's node), so its comments survive for code that reads its own
// source through Function.prototype.toString; otherwise it is transformed,
// and esbuild keeps only legal comments (/*! ... */, @license, @preserve).
func Compile(code string) (string, error) {
	code = strings.TrimPrefix(code, "\ufeff")
	scriptErr := checkScript(code)
	latest := UsesLatest(code)
	switch {
	case !latest:
		return "", scriptErr
	case scriptErr == nil && !needsLowering(code):
		return "", nil
	}
	// ES module syntax (or a real error, which the transform reports).
	r := api.Transform(code, api.TransformOptions{
		Loader:        api.LoaderJS,
		Format:        api.FormatCommonJS,
		Engines:       []api.Engine{{Name: api.EngineNode, Version: RuntimeNode}},
		LegalComments: api.LegalCommentsInline,
		Sourcefile:    "function.js",
		LogLevel:      api.LogLevelSilent,
	})
	if len(r.Errors) > 0 {
		return "", syntaxError(r.Errors[0], 0, code)
	}
	return string(r.Code), nil
}

// The runner compiles code as the body of this function (vm.compileFunction
// with the CommonJS wrapper's parameters): a top-level return is legal and
// sloppy-mode rules apply (e.g. `await` as a name), which checking the code as
// a module would refuse.
const (
	wrapperHead = "(function (exports, require, module, __filename, __dirname) {\n"
	wrapperTail = "\n})"
)

// checkScript parses code the way the runner compiles it.
func checkScript(code string) error {
	// V8 accepts a hashbang line at the very start; keep the line, drop the "#!".
	if strings.HasPrefix(code, "#!") {
		code = "//" + code[2:]
	}
	r := api.Transform(wrapperHead+code+wrapperTail, api.TransformOptions{
		Loader:   api.LoaderJS,
		LogLevel: api.LogLevelSilent,
	})
	if len(r.Errors) > 0 {
		return syntaxError(r.Errors[0], 1, code)
	}
	return nil
}

// needsLowering reports whether code uses syntax the runtime's node lacks
// (decorators, say): esbuild prints it differently for that target than for
// the newest one.
func needsLowering(code string) bool {
	printed := func(engines []api.Engine) (string, bool) {
		r := api.Transform(code, api.TransformOptions{Loader: api.LoaderJS, Engines: engines, LogLevel: api.LogLevelSilent})
		return string(r.Code), len(r.Errors) == 0
	}
	newest, ok1 := printed(nil)
	runtime, ok2 := printed([]api.Engine{{Name: api.EngineNode, Version: RuntimeNode}})
	return ok1 && ok2 && newest != runtime
}

// syntaxError converts esbuild's first error; headLines are lines of a
// wrapper placed before code. An error past code's end (in the wrapper's
// tail: an unclosed brace) points just after code's last character.
func syntaxError(m api.Message, headLines int, code string) *SyntaxError {
	e := &SyntaxError{Line: 1, Column: 1, Message: m.Text}
	loc := m.Location
	if loc == nil {
		return e
	}
	lines := strings.Split(code, "\n")
	line := loc.Line - headLines
	switch {
	case line < 1:
		return e
	case line > len(lines):
		last := strings.TrimSuffix(lines[len(lines)-1], "\r")
		e.Line, e.Column = len(lines), utf8.RuneCountInString(last)+1
		// esbuild's text would be about the wrapper's closing "})".
		e.Message = "Unexpected end of the code: a block, call or literal is not closed"
		return e
	}
	// esbuild's column is a byte offset into the line.
	col := min(max(loc.Column, 0), len(loc.LineText))
	e.Line, e.Column = line, utf8.RuneCountInString(loc.LineText[:col])+1
	return e
}
