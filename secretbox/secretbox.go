// Package secretbox seals small secrets (function secrets, tokens at rest) with
// AES-256-GCM under one 32-byte key.
//
// A sealed value is: 1 version byte (0x01) || 12-byte random nonce || ciphertext || 16-byte GCM tag.
// The version byte is authenticated as part of the additional data, so it cannot be swapped.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeySize is the exact key length New accepts (AES-256).
const KeySize = 32

const (
	version1  byte = 0x01
	nonceSize      = 12
	tagSize        = 16
	overhead       = 1 + nonceSize + tagSize
)

// ErrOpen is returned by Open when a sealed value is malformed, was tampered
// with, or was sealed under another key or with other additional data.
var ErrOpen = errors.New("secretbox: cannot open sealed value (corrupt, tampered or wrong key)")

// Box seals and opens values under one key. It is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secretbox: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts and authenticates plaintext.
func (b *Box) Seal(plaintext []byte) ([]byte, error) {
	return b.SealWithAD(plaintext, nil)
}

// Open authenticates and decrypts a value produced by Seal.
func (b *Box) Open(sealed []byte) ([]byte, error) {
	return b.OpenWithAD(sealed, nil)
}

// SealWithAD is Seal with additional authenticated data: the value opens only
// with the same ad (use it to bind a sealed value to its owner, e.g. tenant and function).
func (b *Box) SealWithAD(plaintext, ad []byte) ([]byte, error) {
	out := make([]byte, 1+nonceSize, overhead+len(plaintext))
	out[0] = version1
	if _, err := rand.Read(out[1 : 1+nonceSize]); err != nil {
		return nil, fmt.Errorf("secretbox: reading random nonce: %w", err)
	}
	return b.aead.Seal(out, out[1:1+nonceSize], plaintext, additional(out[0], ad)), nil
}

// OpenWithAD opens a value produced by SealWithAD with the same ad.
func (b *Box) OpenWithAD(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < overhead || sealed[0] != version1 {
		return nil, ErrOpen
	}
	pt, err := b.aead.Open(nil, sealed[1:1+nonceSize], sealed[1+nonceSize:], additional(sealed[0], ad))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

func additional(version byte, ad []byte) []byte {
	out := make([]byte, 0, 1+len(ad))
	out = append(out, version)
	return append(out, ad...)
}
