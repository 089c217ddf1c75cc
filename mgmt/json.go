package mgmt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
)

// smallBodyLimit bounds the bodies of every request but a function's PUT.
const smallBodyLimit = 64 << 10

// decodeJSON reads the request body, at most limit bytes, strictly into v (a
// pointer to a struct): the Content-Type is application/json, curl's default form type, or absent, the
// body is exactly one JSON object whose keys are v's json field names spelled
// exactly (no unknown, no duplicate keys), valid UTF-8, and every value has
// the field's type. An empty body is an error when required, else it leaves v
// as it is.
func decodeJSON(c echo.Context, v any, limit int64, required bool) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		// curl -d sends application/x-www-form-urlencoded unless told
		// otherwise; the body must still be JSON, so accepting the label costs
		// nothing and makes the obvious curl command work.
		if err != nil || (mt != echo.MIMEApplicationJSON && mt != echo.MIMEApplicationForm) {
			return errs.New(http.StatusUnsupportedMediaType, codeUnsupportedMediaType,
				"The request body must be JSON (Content-Type: application/json).")
		}
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, limit+1))
	if err != nil {
		return errs.Wrap(err, http.StatusBadRequest, codeBadJSON, "The request body could not be read.")
	}
	if int64(len(body)) > limit {
		return errs.New(http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			"The request body is larger than %d bytes.", limit)
	}
	return unmarshalStrict(body, v, required)
}

// unmarshalStrict is decodeJSON without the HTTP: see there.
func unmarshalStrict(body []byte, v any, required bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		if required {
			return errs.BadRequest(codeEmptyBody, "The request body is empty; a JSON object is expected.")
		}
		return nil
	}
	if !utf8.Valid(body) {
		return errs.BadRequest(codeBadJSON, "The request body is not valid UTF-8.")
	}
	if err := checkKeys(body, jsonFields(v)); err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return jsonError(err)
	}
	return nil
}

// checkKeys walks the top level of body: one object, known keys only, each once,
// then nothing but white space.
func checkKeys(body []byte, fields map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errs.BadRequest(codeBadJSON, "The request body must be a JSON object.")
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonError(err)
		}
		key, _ := tok.(string)
		if !fields[key] {
			return errs.BadRequest(codeUnknownField, "The request body has an unknown field %q (expected %s).",
				key, fieldList(fields))
		}
		if seen[key] {
			return errs.BadRequest(codeDuplicateField, "The request body has the field %q more than once.", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return jsonError(err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return jsonError(err)
		}
		return errs.BadRequest(codeBadJSON, "The request body must hold exactly one JSON value.")
	}
	return nil
}

// jsonError turns an encoding/json error into a 400 with one sentence.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return errs.Wrap(err, http.StatusBadRequest, codeBadJSON,
			"The request body is not valid JSON: %s (at byte %d).", syn.Error(), syn.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return errs.Wrap(err, http.StatusBadRequest, codeBadJSON, "The request body is not valid JSON: it ends too early.")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(top level)"
		}
		return errs.Wrap(err, http.StatusBadRequest, codeBadFieldType,
			"Field %q must be %s (got %s).", field, kindName(typ.Type), typ.Value)
	}
	return errs.Wrap(err, http.StatusBadRequest, codeBadJSON, "The request body is not valid JSON.")
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Pointer:
		return kindName(t.Elem())
	}
	return "another type"
}

// jsonFields returns the JSON names of the fields of the struct v points to.
func jsonFields(v any) map[string]bool {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	fields := make(map[string]bool)
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		fields[name] = true
	}
	return fields
}

func fieldList(fields map[string]bool) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, fmt.Sprintf("%q", n))
	}
	slices.Sort(names)
	switch len(names) {
	case 0:
		return "no fields"
	case 1:
		return names[0]
	}
	return "one of " + strings.Join(names, ", ")
}
