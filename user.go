package oidcrp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// User is the signed-in user of a request, as kept in its session.
type User struct {
	Issuer  string    // the provider that authenticated the user
	Subject string    // the provider's identifier of the user ("sub")
	Expiry  time.Time // when the session ends

	claims  json.RawMessage // all claims, or with layered those the ID token lacks
	idToken string          // raw ID token, for the logout hint; dropped when too large
	layered bool            // the claims are the ID token's plus claims
	sid     string          // session identifier, for revocation
	since   time.Time       // when the user signed in; zero in sessions older than this field
	opSID   string          // the provider's session ("sid" claim), for front- and back-channel logout
	rev     *revState       // what the revocation check remembers; set when decoded

	// With Config.KeepTokens:
	accessToken  string
	accessExpiry time.Time // zero: not reported
	refreshToken string
	tokensAt     time.Time // when the tokens were obtained
	tokenType    string    // the access token's token_type: "Bearer", or "DPoP" when bound
	dpop         *dpopKey  // the session's DPoP key (RFC 9449), nil without DPoP
}

// AccessToken returns the user's access token when Config.KeepTokens is set
// (refreshed by the middleware before it expires, when the provider issued
// a refresh token), and "" otherwise. Send it only to the resource servers
// it is meant for.
func (u *User) AccessToken() string { return u.accessToken }

// IDToken returns the raw ID token the session was made from (or the latest
// one a refresh returned), for a proxy that hands it to an upstream as
// oauth2-proxy does, and "" when it was dropped to keep the session cookie
// under 4 KB (see Config.ClaimFilter). It was verified when the user signed
// in; a receiver must verify it again.
func (u *User) IDToken() string { return u.idToken }

// Claims decodes the user's claims (the ID token's, merged with userinfo's,
// after Config.ClaimFilter) into v, as json.Unmarshal does.
func (u *User) Claims(v any) error {
	if u.layered {
		payload, err := jwtPayload(u.idToken)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(payload, v); err != nil || len(u.claims) == 0 {
			return err
		}
	}
	if len(u.claims) == 0 {
		return json.Unmarshal([]byte("{}"), v)
	}
	return json.Unmarshal(u.claims, v)
}

// jwtPayload decodes the payload of a compact JWS, whose signature was
// verified when the session was made.
func jwtPayload(raw string) ([]byte, error) {
	_, rest, ok := strings.Cut(raw, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return nil, errors.New("oidcrp: malformed ID token in session")
	}
	return base64.RawURLEncoding.DecodeString(payload)
}

// flatten replaces layered claims by the merged set, so the ID token can be
// dropped.
func (u *User) flatten() error {
	if !u.layered {
		return nil
	}
	all := map[string]any{}
	if err := u.Claims(&all); err != nil {
		return err
	}
	b, err := json.Marshal(all)
	if err != nil {
		return err
	}
	u.claims, u.layered = b, false
	return nil
}

type userKey struct{}

// UserFromContext returns the user that [RP.Require] or [RP.Optional] put in
// the request context, and whether there is one.
func UserFromContext(ctx context.Context) (*User, bool) {
	u, ok := ctx.Value(userKey{}).(*User)
	return u, ok
}

// sessionJSON is the session as sealed into the cookie.
type sessionJSON struct {
	ID      string          `json:"id"`
	Issuer  string          `json:"iss"`
	Subject string          `json:"sub"`
	Expiry  int64           `json:"exp"`
	IDToken string          `json:"idt,omitempty"`
	Claims  json.RawMessage `json:"c,omitempty"`
	Layered bool            `json:"l,omitempty"`
	Access  string          `json:"at,omitempty"`
	AccExp  int64           `json:"ate,omitempty"`
	Refresh string          `json:"rt,omitempty"`
	TokAt   int64           `json:"tt,omitempty"`
	Since   int64           `json:"st,omitempty"` // unix milliseconds
	OPSID   string          `json:"ps,omitempty"`
	TokType string          `json:"ty,omitempty"` // omitted for Bearer
	DPoPKey []byte          `json:"dk,omitempty"` // the DPoP private scalar
}

func (u *User) encode() []byte {
	b, _ := json.Marshal(sessionJSON{ID: u.sid, Issuer: u.Issuer, Subject: u.Subject, Expiry: u.Expiry.Unix(), IDToken: u.idToken, Claims: u.claims, Layered: u.layered,
		Access: u.accessToken, AccExp: unixOrZero(u.accessExpiry), Refresh: u.refreshToken, TokAt: unixOrZero(u.tokensAt),
		Since: unixMilliOrZero(u.since), OPSID: u.opSID, TokType: storedTokenType(u.tokenType), DPoPKey: u.dpop.scalar()})
	return b
}

func decodeUser(b []byte) (*User, error) {
	var s sessionJSON
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if s.ID == "" || s.Issuer == "" || s.Subject == "" || (s.Layered && s.IDToken == "") {
		return nil, errors.New("incomplete session")
	}
	return &User{Issuer: s.Issuer, Subject: s.Subject, Expiry: time.Unix(s.Expiry, 0), claims: s.Claims, idToken: s.IDToken, layered: s.Layered, sid: s.ID,
		accessToken: s.Access, accessExpiry: timeOrZero(s.AccExp), refreshToken: s.Refresh, tokensAt: timeOrZero(s.TokAt),
		since: timeMilliOrZero(s.Since), opSID: s.OPSID, tokenType: s.TokType, dpop: decodeDPoPKey(s.DPoPKey)}, nil
}

func unixMilliOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func timeMilliOrZero(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
