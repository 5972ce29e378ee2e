# The review console (console/): frontend build and the browser end-to-end test's dependencies.
#   make console-build      npm ci + vite build into console/web/dist (skipped when nothing changed)
#   make console-e2e-deps   Debian's chromium (if missing) and playwright-core (npm ci)
#   make console-dev        Vite dev server on :5173, API forwarded to the console on :8090 (`make up`)
.PHONY: console-build console-e2e-deps console-dev

CONSOLE_WEB := console/web
CONSOLE_NPM_STAMP := $(CONSOLE_WEB)/node_modules/.npm-ci.stamp
CONSOLE_BUILD_STAMP := $(CONSOLE_WEB)/dist/.build.stamp
CONSOLE_SOURCES := $(shell find $(CONSOLE_WEB)/src $(CONSOLE_WEB)/public -type f 2>/dev/null) \
	$(CONSOLE_WEB)/index.html $(CONSOLE_WEB)/vite.config.ts $(CONSOLE_WEB)/tsconfig.json
CHROMIUM ?= /usr/bin/chromium

$(CONSOLE_NPM_STAMP): $(CONSOLE_WEB)/package.json $(CONSOLE_WEB)/package-lock.json
	cd $(CONSOLE_WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CONSOLE_BUILD_STAMP): $(CONSOLE_NPM_STAMP) $(CONSOLE_SOURCES)
	cd $(CONSOLE_WEB) && npm run --silent build
	touch $@

console-build: $(CONSOLE_BUILD_STAMP) ## build the console frontend into console/web/dist

console-e2e-deps: $(CONSOLE_NPM_STAMP) ## chromium (Debian) + playwright-core for the browser test
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing Debian chromium"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
			|| echo "WARNING: chromium could not be installed; the browser test will be skipped"; \
	fi

console-dev: $(CONSOLE_NPM_STAMP) ## frontend dev server (hot reload) against the local stack's console API
	cd $(CONSOLE_WEB) && npx vite

TEST_DEPS += console-build console-e2e-deps

.PHONY: screenshots
screenshots: $(STAMP) console-build console-e2e-deps ## the browser tests alone, saving docs/screenshots (docs/CONSOLE.md)
	HEALER_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PY) -m pytest -q tests/test_console_e2e.py \
		tests/test_console_slide_e2e.py tests/test_console_pipeline_slide_e2e.py
