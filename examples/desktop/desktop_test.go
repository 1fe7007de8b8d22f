package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

// chromium returns the browser to drive, or skips the test when there is
// none (fails instead when TETHER_REQUIRE_CHROMIUM=1, as in CI).
func chromium(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("TETHER_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("TETHER_REQUIRE_CHROMIUM=1 but no Chromium found (Debian: apt-get install chromium)")
	}
	t.Skip("no Chromium found: the browser test is skipped (Debian: apt-get install chromium; TETHER_REQUIRE_CHROMIUM=1 makes this a failure)")
	return ""
}

// instance is one running app and a browser tab showing it.
type instance struct {
	name string
	app  *App
	url  string
	tab  context.Context
}

// The desktop app in a real headless Chromium: two instances of the app
// against one server; records typed into one reach the other through
// "Sync now", the progress bar fills live, and a conflict is resolved from
// the conflict log.
func TestDesktopInChromium(t *testing.T) {
	exe := chromium(t)
	reg, err := Registry()
	if err != nil {
		t.Fatal(err)
	}
	srv := testkit.NewServer(t, reg, server.Options{})

	// The laptop's second push batch of its first sync waits for the test,
	// so that the page can be seen showing progress in the middle.
	reached, release := make(chan struct{}), make(chan struct{})
	hold := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == "batches" && n == 1 {
			close(reached)
			<-release
		}
		return testkit.Pass
	}}
	open := func(name, token string, tr http.RoundTripper) *instance {
		app, err := Open(context.Background(), Config{Name: name, DBPath: filepath.Join(t.TempDir(), name+".db"),
			Server: srv.URL, Token: token, Probe: 100 * time.Millisecond, Transport: tr, PushBatchSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(app.Handler())
		t.Cleanup(func() {
			hs.CloseClientConnections()
			hs.Close()
			app.Close()
		})
		return &instance{name: name, app: app, url: hs.URL}
	}
	laptop := open("laptop", "token-ada", hold)
	desk := open("desk", "token-bob", nil)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox, // as root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 640),
	)
	defer cancelAlloc()
	// A bound on the whole browser session: a hang detector.
	alloc, cancelTimeout := context.WithTimeout(alloc, 3*time.Minute)
	defer cancelTimeout()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	var jsMu sync.Mutex
	var jsErrors []string
	for _, in := range []*instance{laptop, desk} {
		tab, cancel := chromedp.NewContext(browser) // a tab of the same browser
		defer cancel()
		in.tab = tab
		if err := chromedp.Listen(tab, func(ev any) {
			if e, ok := ev.(*runtime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
				jsMu.Lock()
				jsErrors = append(jsErrors, fmt.Sprintf("%s (line %d)", e.ExceptionDetails.Text, e.ExceptionDetails.LineNumber))
				jsMu.Unlock()
			}
		}); err != nil {
			t.Fatalf("open a tab: %v", err)
		}
		do(t, in, "open the page", chromedp.Navigate(in.url))
		waitJS(t, in, "the online state", `document.querySelector("#online").textContent === "online"`)
	}
	shots := screenshotDir(t)

	// Type five contacts into the laptop.
	people := [][2]string{{"Ada Lovelace", "111"}, {"Charles Babbage", "112"}, {"Grace Hopper", "113"},
		{"Alan Turing", "114"}, {"Edsger Dijkstra", "115"}}
	for _, p := range people {
		do(t, laptop, "add "+p[0],
			chromedp.SendKeys(chromedp.ID("name"), p[0]),
			chromedp.SendKeys(chromedp.ID("phone"), p[1]),
			chromedp.Click(chromedp.ID("save")))
		waitJS(t, laptop, p[0]+" in the list", hasRow(p[0], p[1]))
	}
	waitJS(t, laptop, "5 pending", `document.querySelector("#pending").textContent === "5"`)

	// Sync now: the bar shows the push live while a batch is on the wire.
	runs := barRuns(t, laptop)
	do(t, laptop, "click Sync now", chromedp.Click(chromedp.ID("sync")))
	select {
	case <-reached:
	case <-time.After(time.Minute):
		t.Fatal("the sync did not reach its second batch")
	}
	waitJS(t, laptop, "the bar to show the first batch sent",
		`document.querySelector("#bar-text").textContent === "sending 2 of 5" && document.querySelector("#bar-fill").style.width === "40%"`)
	screenshot(t, laptop, shots, "desktop-syncing.png")
	close(release)
	syncDone(t, laptop, runs)
	waitJS(t, laptop, "0 pending", `document.querySelector("#pending").textContent === "0"`)
	if txt := textOf(t, laptop, "#bar-text"); txt != "synced: 5 sent, 0 received" && txt != "synced: 5 sent, 5 received" {
		t.Errorf("laptop bar says %q after the sync", txt)
	}
	phases := eval[string](t, laptop, "read the progress seen", `window.seenPhases.map(p => p.phase + " " + p.done + "/" + p.total).join(", ")`)
	t.Logf("laptop progress shown: %s", phases)
	if !strings.Contains(phases, "push 2/5") {
		t.Errorf("the page was not shown the push progress live: %s", phases)
	}

	// The desk syncs and shows them.
	clickSync(t, desk)
	for _, p := range people {
		waitJS(t, desk, p[0]+" on the desk", hasRow(p[0], p[1]))
	}

	// A conflict: the laptop edits Ada's phone, then the desk edits it too;
	// the desk syncs first, so its later edit wins on the laptop's sync.
	edit(t, laptop, "Ada Lovelace", "222")
	edit(t, desk, "Ada Lovelace", "333")
	clickSync(t, desk)
	clickSync(t, laptop)
	waitJS(t, laptop, "the conflict in the log", `document.querySelectorAll("#conflicts .conflict").length === 1`)
	waitJS(t, laptop, "the desk's phone applied", hasRow("Ada Lovelace", "333"))
	mine, theirs := textOf(t, laptop, "#conflicts .mine"), textOf(t, laptop, "#conflicts .theirs")
	if mine != "Mine: Ada Lovelace, 222" || theirs != "Theirs: Ada Lovelace, 333" {
		t.Errorf("conflict shows %q / %q", mine, theirs)
	}
	screenshot(t, laptop, shots, "desktop-conflict.png")

	// Keep mine: the laptop's phone goes up again and reaches the desk.
	do(t, laptop, "click Keep mine", chromedp.Click(chromedp.CSS("#conflicts .keep")))
	waitJS(t, laptop, "the conflict closed", `document.querySelectorAll("#conflicts .conflict").length === 0`)
	waitJS(t, laptop, "my phone back", hasRow("Ada Lovelace", "222"))
	clickSync(t, laptop)
	clickSync(t, desk)
	waitJS(t, desk, "the laptop's phone on the desk", hasRow("Ada Lovelace", "222"))

	// Take theirs: the desk edits Grace, the laptop too, later; the laptop
	// syncs first and wins the desk's sync; the desk takes the laptop's.
	edit(t, desk, "Grace Hopper", "444")
	edit(t, laptop, "Grace Hopper", "555")
	clickSync(t, laptop)
	clickSync(t, desk)
	waitJS(t, desk, "the conflict on the desk", `document.querySelectorAll("#conflicts .conflict").length === 1`)
	do(t, desk, "click Take theirs", chromedp.Click(chromedp.CSS("#conflicts .take")))
	waitJS(t, desk, "the conflict closed", `document.querySelectorAll("#conflicts .conflict").length === 0`)
	waitJS(t, desk, "their phone", hasRow("Grace Hopper", "555"))
	clickSync(t, desk)
	clickSync(t, laptop)
	for _, in := range []*instance{laptop, desk} {
		waitJS(t, in, "converged", hasRow("Ada Lovelace", "222")+" && "+hasRow("Grace Hopper", "555"))
		waitJS(t, in, "nothing pending", `document.querySelector("#pending").textContent === "0"`)
	}
	screenshot(t, laptop, shots, "desktop.png")

	// Offline: the page says so, and Sync now returns at once, keeping the
	// edit on the device.
	edit(t, desk, "Alan Turing", "999")
	srv.CloseClientConnections()
	srv.Close()
	waitJS(t, desk, "the offline state", `document.querySelector("#online").textContent === "offline"`)
	runs = barRuns(t, desk)
	do(t, desk, "click Sync now offline", chromedp.Click(chromedp.ID("sync")))
	waitJS(t, desk, "the offline sync to end", fmt.Sprintf(`Number(document.querySelector("#bar").dataset.runs) > %d`, runs))
	if state, txt := eval[string](t, desk, "read the bar", `document.querySelector("#bar").dataset.state`), textOf(t, desk, "#bar-text"); state != "error" || txt != "offline: changes stay on this device" {
		t.Errorf("offline sync: bar %q %q", state, txt)
	}
	waitJS(t, desk, "the edit pending", `document.querySelector("#pending").textContent === "1"`)
	screenshot(t, desk, shots, "desktop-offline.png")

	rows := eval[string](t, desk, "read the desk's list",
		`[...document.querySelectorAll("#records tr")].map(tr => tr.querySelector(".name").textContent + " " + tr.querySelector(".phone").textContent).join("; ")`)
	t.Logf("desk shows: %s", rows)
	jsMu.Lock()
	defer jsMu.Unlock()
	for _, e := range jsErrors {
		t.Errorf("JavaScript error: %s", e)
	}
}

func do(t *testing.T, in *instance, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(in.tab, actions...); err != nil {
		t.Fatalf("%s: %s: %v", in.name, what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, in *instance, what, expr string) T {
	t.Helper()
	v, err := chromedp.Run(in.tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %s: %v", in.name, what, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is true in the page.
func waitJS(t *testing.T, in *instance, what, expr string) {
	t.Helper()
	ok, err := chromedp.Run(in.tab, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(20*time.Millisecond),
		chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil || !ok {
		rows, _ := chromedp.Run(in.tab, chromedp.Evaluate[string](`[...document.querySelectorAll("#records tr")].map(tr => tr.innerText).join("; ")`))
		form, _ := chromedp.Run(in.tab, chromedp.Evaluate[string](`[..."edit-id name phone".split(" ")].map(id => document.getElementById(id).value).join("|")`))
		t.Fatalf("%s: waiting for %s: %v (bar: %q, error: %q, form: %q, records: %s)", in.name, what, err,
			textOf(t, in, "#bar-text"), textOf(t, in, "#last-error"), form, rows)
	}
}

func textOf(t *testing.T, in *instance, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(in.tab, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return s
}

func hasRow(name, phone string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#records tr")].some(tr => tr.querySelector(".name").textContent === %q && tr.querySelector(".phone").textContent === %q)`, name, phone)
}

func barRuns(t *testing.T, in *instance) int {
	t.Helper()
	return eval[int](t, in, "read the bar", `Number(document.querySelector("#bar").dataset.runs)`)
}

// syncDone waits for the sync started after runs syncs to end, and checks
// that it succeeded.
func syncDone(t *testing.T, in *instance, runs int) {
	t.Helper()
	waitJS(t, in, "the sync to end", fmt.Sprintf(`Number(document.querySelector("#bar").dataset.runs) > %d`, runs))
	state := eval[string](t, in, "read the bar", `document.querySelector("#bar").dataset.state`)
	if state != "done" {
		t.Fatalf("%s: bar %q after Sync now: %s", in.name, state, textOf(t, in, "#bar-text"))
	}
}

func clickSync(t *testing.T, in *instance) {
	t.Helper()
	runs := barRuns(t, in)
	do(t, in, "click Sync now", chromedp.Click(chromedp.ID("sync")))
	syncDone(t, in, runs)
}

// edit changes a contact's phone through the form.
func edit(t *testing.T, in *instance, name, phone string) {
	t.Helper()
	button := fmt.Sprintf(`//tr[td[@class="name" and text()=%q]]//button[contains(@class, "edit")]`, name)
	do(t, in, "edit "+name,
		chromedp.Click(chromedp.Search(button)),
		chromedp.WaitVisible(chromedp.ID("cancel")))
	eval[string](t, in, "clear the phone", `document.getElementById("phone").value = ""`) // as select-all and delete
	do(t, in, "type the phone of "+name,
		chromedp.SendKeys(chromedp.ID("phone"), phone),
		chromedp.Click(chromedp.ID("save")))
	waitJS(t, in, name+" edited", hasRow(name, phone))
}

// screenshotDir is the test's temporary directory, where screenshots go;
// TETHER_SCREENSHOT_DIR names another to keep them.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("TETHER_SCREENSHOT_DIR"); d != "" {
		return d
	}
	return t.TempDir()
}

func screenshot(t *testing.T, in *instance, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(in.tab, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("%s: screenshot: %v", in.name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: screenshot %s (%d bytes)", in.name, path, len(png))
}
