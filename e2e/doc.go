// Package e2e holds sluice's end-to-end tests: a real sluice (server.New
// and Start on loopback), real upstreams, real load, and the dashboard in
// a real headless Chromium driven through the DevTools protocol
// (chromedp). It has no code of its own.
//
// The browser test needs Debian's chromium at /usr/bin/chromium (or the
// binary SLUICE_CHROMIUM names), which scripts/install-test-deps.sh
// installs for `make test`. Without it the test is skipped, except under
// CI (the CI variable set), where it fails.
//
// SLUICE_UPDATE_SCREENSHOT=1 also writes the screenshot the test takes to
// docs/dashboard.png, after letting the charts fill for a minute.
package e2e
