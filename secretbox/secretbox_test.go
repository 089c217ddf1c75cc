package secretbox

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func mustBox(t *testing.T, key []byte) *Box {
	t.Helper()
	b, err := New(key)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

func TestNewKeyLength(t *testing.T) {
	for _, n := range []int{0, 1, 16, 24, 31, 33, 64} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("New with %d-byte key: want error", n)
		}
	}
	if _, err := New(make([]byte, 32)); err != nil {
		t.Errorf("New with 32-byte key: %v", err)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	b := mustBox(t, testKey(1))
	for _, tc := range []struct {
		name string
		pt   []byte
	}{
		{"empty", []byte{}},
		{"short", []byte("s3cr3t")},
		{"json", []byte(`{"API_KEY":"abc","X":"y"}`)},
		{"binary", []byte{0, 1, 2, 255, 254}},
		{"large", bytes.Repeat([]byte("x"), 1<<16)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealed, err := b.Seal(tc.pt)
			if err != nil {
				t.Fatal(err)
			}
			if len(sealed) != len(tc.pt)+overhead {
				t.Errorf("sealed length %d, want %d", len(sealed), len(tc.pt)+overhead)
			}
			if sealed[0] != version1 {
				t.Errorf("version byte %#x", sealed[0])
			}
			if len(tc.pt) >= 4 && bytes.Contains(sealed, tc.pt) {
				t.Error("sealed value contains the plaintext")
			}
			got, err := b.Open(sealed)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.pt) {
				t.Errorf("Open = %q, want %q", got, tc.pt)
			}
		})
	}
}

func TestSealUsesFreshNonce(t *testing.T) {
	b := mustBox(t, testKey(1))
	s1, _ := b.Seal([]byte("same"))
	s2, _ := b.Seal([]byte("same"))
	if bytes.Equal(s1, s2) {
		t.Fatal("two seals of the same plaintext are identical")
	}
}

func TestOpenRejects(t *testing.T) {
	b := mustBox(t, testKey(1))
	other := mustBox(t, testKey(2))
	sealed, err := b.Seal([]byte("attack at dawn"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 0x01
		return c
	}
	for _, tc := range []struct {
		name   string
		box    *Box
		sealed []byte
	}{
		{"wrong key", other, sealed},
		{"flipped version byte", b, flip(0)},
		{"flipped nonce", b, flip(1)},
		{"flipped ciphertext", b, flip(1 + nonceSize + 2)},
		{"flipped tag", b, flip(len(sealed) - 1)},
		{"truncated", b, sealed[:len(sealed)-1]},
		{"too short", b, sealed[:overhead-1]},
		{"empty", b, nil},
		{"extended", b, append(bytes.Clone(sealed), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := tc.box.Open(tc.sealed)
			if !errors.Is(err, ErrOpen) {
				t.Fatalf("Open error = %v, want ErrOpen", err)
			}
			if pt != nil {
				t.Fatalf("Open returned plaintext %q on failure", pt)
			}
		})
	}
}

func TestAdditionalData(t *testing.T) {
	b := mustBox(t, testKey(3))
	sealed, err := b.SealWithAD([]byte("v"), []byte("acme/fn"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.OpenWithAD(sealed, []byte("acme/fn")); err != nil || string(got) != "v" {
		t.Fatalf("OpenWithAD same ad = %q, %v", got, err)
	}
	for _, ad := range [][]byte{nil, []byte("other/fn"), []byte("acme/fn2")} {
		if _, err := b.OpenWithAD(sealed, ad); !errors.Is(err, ErrOpen) {
			t.Errorf("OpenWithAD(%q) error = %v, want ErrOpen", ad, err)
		}
	}
	if _, err := b.Open(sealed); !errors.Is(err, ErrOpen) {
		t.Errorf("Open of a value sealed with ad: %v, want ErrOpen", err)
	}
}

func TestParseKey(t *testing.T) {
	raw := make([]byte, KeySize)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"hex", hex.EncodeToString(raw), true},
		{"hex upper", strings.ToUpper(hex.EncodeToString(raw)), true},
		{"hex with newline", hex.EncodeToString(raw) + "\n", true},
		{"base64 std", base64.StdEncoding.EncodeToString(raw), true},
		{"base64 raw std", base64.RawStdEncoding.EncodeToString(raw), true},
		{"base64 url", base64.URLEncoding.EncodeToString(raw), true},
		{"base64 raw url", base64.RawURLEncoding.EncodeToString(raw), true},
		{"empty", "", false},
		{"spaces", "   ", false},
		{"short hex", hex.EncodeToString(raw[:31]), false},
		{"long hex", hex.EncodeToString(append(bytes.Clone(raw), 1)), false},
		{"bad hex of right length", strings.Repeat("zz", KeySize), false},
		{"base64 of 16 bytes", base64.StdEncoding.EncodeToString(raw[:16]), false},
		{"garbage", "not a key!", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.in)
			if !tc.ok {
				if err == nil {
					t.Fatalf("ParseKey(%q) = %x, want error", tc.in, k)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if !bytes.Equal(k, raw) {
				t.Fatalf("ParseKey = %x, want %x", k, raw)
			}
		})
	}
}

func TestParseKeyErrorDoesNotLeakKey(t *testing.T) {
	in := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef")) // 16 bytes: rejected
	_, err := ParseKey(in)
	if err == nil || strings.Contains(err.Error(), in) {
		t.Fatalf("error %v leaks or is nil", err)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "secrets.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != KeySize {
		t.Fatalf("key length %d", len(k1))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	content, _ := os.ReadFile(path)
	if strings.TrimSpace(string(content)) != hex.EncodeToString(k1) {
		t.Errorf("key file content is not the hex key")
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) {
		t.Fatal("second LoadOrCreateKey returned a different key")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestLoadOrCreateKeyExisting(t *testing.T) {
	dir := t.TempDir()
	raw := testKey(9)
	for _, tc := range []struct {
		name    string
		content string
		ok      bool
	}{
		{"hex", hex.EncodeToString(raw) + "\n", true},
		{"base64", base64.StdEncoding.EncodeToString(raw), true},
		{"empty", "", false},
		{"invalid", "hello", false},
		{"short", hex.EncodeToString(raw[:10]), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".key")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := LoadOrCreateKey(path)
			if !tc.ok {
				if err == nil {
					t.Fatalf("want error, got key %x", k)
				}
				// An invalid file must not be overwritten.
				if b, _ := os.ReadFile(path); string(b) != tc.content {
					t.Fatalf("invalid key file was modified")
				}
				return
			}
			if err != nil || !bytes.Equal(k, raw) {
				t.Fatalf("LoadOrCreateKey = %x, %v", k, err)
			}
		})
	}
}

func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.key")
	const n = 16
	keys := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			keys[i], errs[i] = LoadOrCreateKey(path)
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("goroutine %d got a different key", i)
		}
	}
	onDisk, err := LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(onDisk, keys[0]) {
		t.Fatalf("key on disk differs from the returned one")
	}
}

func TestLoadOrCreateKeyUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory where the key file should be: neither readable as a key nor creatable.
	path := filepath.Join(dir, "k")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Fatal("want error when the key path is a directory")
	}
}
