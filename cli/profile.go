package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Profile is what `wharf login` saves: where the node is and the token to
// use. It holds a secret, so the file is private to its owner (0600).
type Profile struct {
	URL    string `json:"url"`
	Token  string `json:"token"`
	Tenant string `json:"tenant,omitempty"` // set for tenant tokens
	Admin  bool   `json:"admin,omitempty"`
}

// profilePath is $WHARF_CONFIG, or ~/.config/wharf/profile.json.
func profilePath(getenv func(string) string) (string, error) {
	if p := getenv("WHARF_CONFIG"); p != "" {
		return p, nil
	}
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			h, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("cannot find a home directory for the profile; set WHARF_CONFIG")
			}
			home = h
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "wharf", "profile.json"), nil
}

// loadProfile reads the profile; a missing one is empty, not an error.
func loadProfile(path string) (Profile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Profile{}, nil
	}
	if err != nil {
		return Profile{}, fmt.Errorf("cannot read the profile %s: %w", path, err)
	}
	var p Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return Profile{}, fmt.Errorf("the profile %s is not valid JSON (log in again to rewrite it): %w", path, err)
	}
	return p, nil
}

// saveProfile writes the profile atomically with mode 0600 (its directory
// 0700), so the token is never readable by others, not even for a moment.
func saveProfile(path string, p Profile) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".profile-*")
	if err != nil {
		return fmt.Errorf("cannot write the profile in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing left to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("cannot write the profile %s: %w", path, err)
	}
	return nil
}
