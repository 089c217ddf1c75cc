// Package sandbox owns the seccomp profile Wharf applies to every tenant
// container.
//
// seccomp.json is the profile Wharf ships. It is derived, by Derive and
// WharfPolicy, from docker-default.json, Docker's own default profile
// (github.com/moby/profiles/seccomp v0.2.3, default.json, Apache-2.0, copied
// unchanged): the same allowlist, minus the syscalls policy.go denies (each
// with its reason), with socket families and personalities narrowed, rules
// that need a capability removed (containers hold none) and secondary
// syscall ABIs dropped. A test regenerates it and fails when the checked-in
// file differs (go test ./sandbox -run TestShippedProfile -update rewrites it),
// so the file operators read is the one Wharf applies.
package sandbox

import (
	_ "embed"
	"fmt"
)

var (
	//go:embed docker-default.json
	dockerDefaultJSON []byte

	//go:embed seccomp.json
	profileJSON []byte
)

// SeccompProfile is Wharf's seccomp profile as JSON, ready for Docker's
// SecurityOpt "seccomp=<json>".
func SeccompProfile() string { return string(profileJSON) }

// DockerDefault is the base profile Wharf's is derived from.
func DockerDefault() (Profile, error) { return ParseProfile(dockerDefaultJSON) }

// Generate derives Wharf's profile from the embedded base and renders it.
func Generate() ([]byte, error) {
	base, err := DockerDefault()
	if err != nil {
		return nil, fmt.Errorf("docker default profile: %w", err)
	}
	p, err := Derive(base, WharfPolicy())
	if err != nil {
		return nil, err
	}
	return p.JSON()
}
