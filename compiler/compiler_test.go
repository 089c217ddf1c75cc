package compiler

import (
	"errors"
	"strings"
	"testing"
)

func TestUsesLatest(t *testing.T) {
	for _, c := range []struct {
		code string
		want bool
	}{
		{"'use latest';\nimport x from 'x'", true},
		{`"use latest"` + "\nmodule.exports = 1", true},
		{"  \n\t'use latest'\nexport default 1", true},
		{"\ufeff'use latest'", true},
		{"'use latest'", true},
		{"'use latest'  ;", true},
		{"// comment\n'use latest';", false}, // only whitespace may come before
		{"'use strict';\n'use latest';", false},
		{"'use latest' + x", false},
		{"'use  latest';", false},
		{"'use latest\";", false},
		{"module.exports = 'use latest';", false},
		{"", false},
	} {
		if got := UsesLatest(c.code); got != c.want {
			t.Errorf("UsesLatest(%q) = %v, want %v", c.code, got, c.want)
		}
	}
}

// Every one of these is valid as the body the runner compiles (node's
// CommonJS wrapper, sloppy mode); the deploy-time check must never refuse them.
func TestPlainCodeValidForNodeIsAccepted(t *testing.T) {
	for _, code := range []string{
		"var x = 1;\nreturn function (cb) { cb(null, x) }",
		"return",
		"var await = 1, yield = 2, let = 3, async = 4, of = [1], using = 5; for (of of of) {}",
		"with (Math) { var y = max(1, 2) }",
		"var o = 017, n = 0888, s = '\\101' + '\\8';",
		"<!-- legacy HTML comment\nvar q = 1\n--> also one",
		"function f(a, a) { return arguments.callee }",
		"if (1) function g() {} else function h() {}",
		"for (var i = 0 in {}) {}",
		"a: function l() {}",
		"var v = /[\\p{L}--\\p{N}]/v, d = /a/dgimsuy;",
		"class A { static #p = 1; static has(o) { return #p in o } }\nx ??= a?.b ?? 1n",
		"#!/usr/bin/env node\nmodule.exports = function (cb) { cb() }",
		"\ufeffmodule.exports = function (cb) { cb() }",
		"module.exports = function (cb) { cb() } // no newline at the end",
		"'use strict';\nreturn (ctx, cb) => cb()",
	} {
		out, err := Compile(code)
		if err != nil || out != "" {
			t.Errorf("Compile(%q) = %q, %v; want it run as written", code, out, err)
		}
	}
}

func TestSyntaxErrorsNameLineAndColumn(t *testing.T) {
	for _, c := range []struct {
		name, code   string
		line, column int
		msg          string
	}{
		{"plain", "module.exports = function (cb) {\n  cb(null, {a: 1,,})\n}", 2, 18, `found ","`},
		{"first line", "module.exports = function (cb) {;;; )", 1, 37, `")"`},
		{"characters not bytes", "var s = 'héé';\nvar t = 'ü' )", 2, 13, `")"`},
		{"unclosed at the end", "module.exports = function (cb) {\n  cb(null, 1)", 2, 14, "Unexpected end of the code"},
		{"import without use latest", "import x from 'x';\nmodule.exports = x", 1, 8, ""},
		{"use latest", "'use latest';\nconst f = async () => {\n  await await;\n}", 3, 14, `Unexpected ";"`},
		{"use latest module with top-level return", "'use latest';\nimport x from 'x';\nreturn x", 3, 1, "Top-level return"},
		{"use latest top-level await", "'use latest';\nconst x = await 1;\nmodule.exports = (cb) => cb(null, x)", 2, 11, "Top-level await"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := Compile(c.code)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Compile = %q, %v; want a SyntaxError", out, err)
			}
			if se.Line != c.line || se.Column != c.column || !strings.Contains(se.Message, c.msg) {
				t.Fatalf("got %+v, want line %d column %d with %q", se, c.line, c.column, c.msg)
			}
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("Error() = %q", err)
			}
		})
	}
}

// 'use latest' code node runs as written is kept as written, comments and all.
func TestUseLatestKeptWhenNodeRunsIt(t *testing.T) {
	code := "'use latest';\nconst _ = require('lodash');\nfunction view() {/*\n<h1><%= name %></h1>\n*/}\n" +
		"module.exports = async (ctx, cb) => cb(null, ctx?.query ?? {})"
	if out, err := Compile(code); err != nil || out != "" {
		t.Fatalf("Compile = %q, %v", out, err)
	}
}

func TestUseLatestModulesBecomeCommonJS(t *testing.T) {
	code := "'use latest';\nimport express from 'express';\nimport { fromExpress } from 'webtask-tools';\n" +
		"/*! kept: a legal comment */\n// dropped\n" +
		"export default function (ctx, cb) {\n  /*! kept too */\n  /* dropped: an ordinary block comment */\n  cb(null, typeof express)\n}\n"
	out, err := Compile(code)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`require("express")`, `require("webtask-tools")`, "module.exports", "/*! kept: a legal comment */", "/*! kept too */"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"\nimport ", "\nexport ", "dropped"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("output still has %q:\n%s", unwanted, out)
		}
	}
	// The output is itself valid plain code.
	if again, err := Compile(out); err != nil || again != "" {
		t.Fatalf("compiled output does not check as plain code: %q, %v", again, err)
	}
}

// Syntax newer than the runtime's node is lowered even without modules.
func TestUseLatestLowersWhatNodeLacks(t *testing.T) {
	code := "'use latest';\nfunction dec(c) { return c }\n@dec class A {}\nmodule.exports = (cb) => cb(null, A.name)"
	out, err := Compile(code)
	if err != nil {
		t.Fatal(err)
	}
	if out == "" || strings.Contains(out, "@dec") {
		t.Fatalf("decorator not lowered:\n%s", out)
	}
}
