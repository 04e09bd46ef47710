package oidctest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
)

// This file signs tokens with the standard library alone, so that the
// stand-in shares no JOSE code with the verifier under test.

var b64 = base64.RawURLEncoding

// signJWT returns claims as a compact JWS signed RS256 by key, with kid
// in its header.
func signJWT(key *rsa.PrivateKey, kid string, claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// jwks is the JSON Web Key Set (RFC 7517) publishing the public halves of
// keys, by key id.
func jwks(keys map[string]*rsa.PrivateKey) map[string]any {
	var list []map[string]string
	for kid, k := range keys {
		list = append(list, map[string]string{
			"kty": "RSA",
			"use": "sig",
			"alg": "RS256",
			"kid": kid,
			"n":   b64.EncodeToString(k.PublicKey.N.Bytes()),
			"e":   b64.EncodeToString(big.NewInt(int64(k.PublicKey.E)).Bytes()),
		})
	}
	return map[string]any{"keys": list}
}

// atHash is the at_hash claim of an access token signed RS256: the left
// half of its SHA-256, base64url.
func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return b64.EncodeToString(sum[:len(sum)/2])
}

// s256 is the PKCE S256 challenge of verifier (RFC 7636 §4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return b64.EncodeToString(sum[:])
}
