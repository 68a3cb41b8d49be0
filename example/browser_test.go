package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// These tests drive the example in headless Chromium: real cookies, real
// redirects, real forms and a real Back button. ./scripts/test.sh installs
// Chromium (scripts/chromium.sh) and sets OIDCRP_CHROMIUM. With
// OIDCRP_SCREENSHOTS=DIR the tests save screenshots of the library's pages
// there, to look at.

// chromiumPath finds the browser: $OIDCRP_CHROMIUM, else chromium on PATH.
// Without one the test fails under CI and is skipped otherwise.
func chromiumPath(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser"}
	if p := os.Getenv("OIDCRP_CHROMIUM"); p != "" {
		names = []string{p}
	}
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	howto := fmt.Sprintf("no browser for the browser tests (%s not found): run ./scripts/test.sh, which installs Chromium, "+
		"or scripts/chromium.sh (Debian: apt-get install chromium), or set OIDCRP_CHROMIUM to a Chromium binary", strings.Join(names, ", "))
	if os.Getenv("CI") != "" {
		t.Fatal(howto)
	}
	t.Skip(howto)
	return ""
}

// newChromium starts a headless Chromium with a fresh profile and returns
// the context of its first tab. The flags keep it off the network: this
// machine has no outside network, and Chromium's background connections
// would only fail.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	var out syncBuffer
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.CombinedOutput(&out),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancel()
		if t.Failed() {
			t.Logf("chromium output (without its D-Bus complaints):\n%s", chromiumLog(out.String()))
		}
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return bctx
}

// chromiumLog returns the last lines of Chromium's output, less the noise of
// a machine without D-Bus.
func chromiumLog(out string) string {
	var keep []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(line, "dbus") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep[max(0, len(keep)-40):], "\n")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tab is one browser tab. Its methods return errors so that tabs can work
// in goroutines.
type tab struct{ ctx context.Context }

// view is what the tab shows.
type view struct {
	URL, Text, H1 string
}

func (v view) String() string { return fmt.Sprintf("%s\n%.600s", v.URL, v.Text) }

func (tb tab) do(steps ...chromedp.Action[chromedp.Void]) error {
	return chromedp.Do(tb.ctx, steps...)
}

// current reads the loaded document; ok is false while one is loading.
func (tb tab) current() (v view, ok bool) {
	r, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]string](`document.readyState === "complete" && document.body
		? [location.href, document.body.innerText, (document.querySelector("h1") || {}).textContent || ""] : []`))
	if err != nil || len(r) != 3 {
		return view{}, false
	}
	return view{URL: r[0], Text: r[1], H1: r[2]}, true
}

// wait waits until the tab shows a page for which want is true.
func (tb tab) wait(what string, want func(view) bool) (view, error) {
	var last view
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if v, ok := tb.current(); ok {
			last = v
			if want(v) {
				return v, nil
			}
		}
	}
	return last, fmt.Errorf("waiting for %s; the tab shows %s", what, last)
}

// click clicks the element that css selects and waits for a page for which
// want is true.
func (tb tab) click(css, what string, want func(view) bool) (view, error) {
	if err := tb.do(chromedp.Click(chromedp.CSS(css), chromedp.NodeVisible)); err != nil {
		return view{}, fmt.Errorf("click %s: %w", css, err)
	}
	return tb.wait(what, want)
}

func (tb tab) screenshot(t *testing.T, name string) {
	dir := os.Getenv("OIDCRP_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	}
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
	}
}

// atProvider reports the development provider's sign-in page.
func atProvider(v view) bool {
	return strings.Contains(v.Text, "not for production") && strings.Contains(v.Text, "Sign in as")
}

// showsUser reports a page of the example that shows the signed-in user.
func showsUser(v view) bool {
	return strings.Contains(v.Text, "Hello, Demo User") || strings.Contains(v.Text, `"sub":"demo-user"`) ||
		strings.Contains(v.Text, "demo@example.test") && !atProvider(v)
}

// TestBrowserSignInAndOut cancels a sign-in, signs in, reads /me, signs out
// with the example's button, and presses Back: no page may show the user
// any more.
func TestBrowserSignInAndOut(t *testing.T) {
	tb := tab{newChromium(t)}
	base := start(t)
	must := func(v view, err error) view {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	// Cancel at the provider: the error page says so in words and leaves
	// the user there, with a way to try again.
	if err := tb.do(chromedp.Navigate(base + "/")); err != nil {
		t.Fatal(err)
	}
	must(tb.wait("the provider's sign-in page", atProvider))
	v := must(tb.click(`button[value="deny"]`, "the cancelled page", func(v view) bool { return !atProvider(v) }))
	if v.H1 != "Sign-in was cancelled" || !strings.HasPrefix(v.URL, base+"/auth/callback?") || strings.Contains(v.Text, "Forbidden") {
		t.Fatalf("after Cancel: %q at %s", v.H1, v)
	}
	tb.screenshot(t, "cancelled")
	if os.Getenv("OIDCRP_SCREENSHOTS") != "" { // and as on a phone
		if err := tb.do(chromedp.EmulateViewport(390, 640, chromedp.EmulateScale(2))); err != nil {
			t.Fatal(err)
		}
		tb.screenshot(t, "cancelled-narrow")
		if err := tb.do(chromedp.ResetViewport()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	if again, _ := tb.current(); again.URL != v.URL {
		t.Fatalf("the cancelled page went on to %s by itself", again.URL)
	}
	must(tb.click(`a.button`, "the provider after Try again", atProvider))
	must(tb.click(`button[value="login"]`, "/ signed in", func(v view) bool { return v.URL == base+"/" && showsUser(v) }))

	if err := tb.do(chromedp.Navigate(base + "/me")); err != nil {
		t.Fatal(err)
	}
	me := must(tb.wait("/me", showsUser))
	if !strings.Contains(me.Text, `"email":"demo@example.test"`) {
		t.Fatalf("/me: %s", me)
	}

	// The sign-out page names the user.
	if err := tb.do(chromedp.Navigate(base + "/logout")); err != nil {
		t.Fatal(err)
	}
	v = must(tb.wait("the sign-out page", func(v view) bool { return v.H1 == "Sign out" }))
	if !strings.Contains(v.Text, "You are signed in as Demo User (demo@example.test).") {
		t.Fatalf("sign-out page: %s", v)
	}
	tb.screenshot(t, "sign-out")

	// Sign out with the example's own button.
	if err := tb.do(chromedp.Navigate(base + "/")); err != nil {
		t.Fatal(err)
	}
	must(tb.wait("/", showsUser))
	v = must(tb.click(`form button[type="submit"]`, "the signed-out page", func(v view) bool { return v.H1 == "You are signed out" }))
	if !strings.HasPrefix(v.URL, base+"/logout?") {
		t.Fatalf("signed out at %s", v)
	}
	tb.screenshot(t, "signed-out")

	// Back, through every page of this session: none shows the user. Each
	// is loaded again (not from the back/forward cache or the HTTP cache),
	// so the protected ones send the browser to the provider.
	history, err := chromedp.Run(tb.ctx, chromedp.NavigationEntries())
	if err != nil {
		t.Fatal(err)
	}
	for range history.CurrentIndex {
		prev := v
		if _, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](`setTimeout(() => history.back(), 0), true`)); err != nil {
			t.Fatal(err)
		}
		v = must(tb.wait("the previous page", func(v view) bool { return v.URL != prev.URL || v.Text != prev.Text }))
		t.Logf("Back: %s %q", v.URL, v.H1)
		if showsUser(v) {
			t.Fatalf("after sign-out, Back shows the user's page:\n%s", v)
		}
		if strings.HasPrefix(v.URL, "about:") {
			break
		}
	}
}

// TestBrowserTwoTabsSignInAtOnce opens the sign-in page in two tabs of one
// browser, then signs in in both at the same time: each tab's attempt has
// its own cookie, so both end signed in.
func TestBrowserTwoTabsSignInAtOnce(t *testing.T) {
	browser := newChromium(t)
	base := start(t)
	tabs := make([]tab, 2)
	for i := range tabs {
		ctx, cancel := chromedp.NewContext(browser)
		t.Cleanup(cancel)
		tabs[i] = tab{ctx}
		if err := tabs[i].do(chromedp.Navigate(base + "/me")); err != nil {
			t.Fatal(err)
		}
	}
	for i, tb := range tabs {
		if _, err := tb.wait("the provider's sign-in page", atProvider); err != nil {
			t.Fatalf("tab %d: %v", i, err)
		}
	}
	errs := make([]error, len(tabs))
	var wg sync.WaitGroup
	for i, tb := range tabs {
		wg.Go(func() {
			_, errs[i] = tb.click(`button[value="login"]`, "/me signed in", func(v view) bool {
				return v.URL == base+"/me" && showsUser(v)
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}
