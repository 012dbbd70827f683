# make book | make test | make bench | make notebooks   (each installs .venv when needed)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
BOOK_FLAGS := -W -n --keep-going

export PATH := $(BIN):$(PATH)
# No progress bars in executed pages, tests and benchmarks (see utils.system.is_quiet).
export DLCOURSE_QUIET := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: install sandbox browser services book book-all test test-fast bench bench-lectures bench-grading bench-cluster notebooks assignment-pages repository clean

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# bubblewrap: the grader's sandbox. Installed from Debian/Ubuntu packages when missing (as root,
# or with sudo); on other systems the grader refuses untrusted work (see README).
sandbox:
	@command -v bwrap >/dev/null 2>&1 || [ "$$(uname -s)" != Linux ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap"; apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	    sudo apt-get install -y -qq bubblewrap; \
	  else echo "bubblewrap is missing: install it with your package manager"; exit 1; fi; }

# Chromium: the browser tests drive Debian's package through playwright (nothing downloads a
# browser). Installed like bubblewrap when missing; elsewhere set DLCOURSE_CHROMIUM to a
# Chromium or Chrome executable.
browser:
	@command -v chromium >/dev/null 2>&1 || [ -n "$$DLCOURSE_CHROMIUM" ] || [ "$$(uname -s)" != Linux ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium"; apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	    sudo apt-get install -y -qq chromium; \
	  else echo "Chromium is missing: install it with your package manager"; exit 1; fi; }

# Redis and PostgreSQL: the tests of grading across machines start both on loopback (as the
# browser tests start Chromium). Installed like bubblewrap when missing.
services:
	@{ command -v redis-server >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && \
	   [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; } || \
	  [ "$$(uname -s)" != Linux ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server, postgresql and rabbitmq-server"; apt-get update -qq && \
	    apt-get install -y -qq redis-server postgresql rabbitmq-server >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	    sudo apt-get install -y -qq redis-server postgresql rabbitmq-server; \
	  else echo "Redis, PostgreSQL or RabbitMQ is missing: install them with your package manager"; exit 1; fi; }

book: $(STAMP)  ## build the site into _build/html (only what changed)
	$(BIN)/jupyter-book build $(BOOK_FLAGS) .
	@echo "Open file://$(CURDIR)/_build/html/index.html"

book-all: $(STAMP)  ## rebuild every page, as CI does
	$(BIN)/jupyter-book build --all $(BOOK_FLAGS) .

test: $(STAMP) sandbox browser services  ## the whole suite: utils, notebooks (nbval), grader round trips, site
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--junitxml=test-results/junit.xml tests notebooks

# The unit tests of utils and of the grader's stages (and the sandbox itself): about a minute.
test-fast: $(STAMP) sandbox  ## unit tests only: utils, the grader's stages, the sandbox
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 tests/test_utils_*.py tests/test_grader_units.py tests/test_grader_lms.py tests/test_sandbox.py

bench: $(STAMP) sandbox  ## time every notebook, assignment, book build and one autograde
	$(BIN)/python tests/bench.py

bench-lectures: $(STAMP)  ## the lecture pages only, or those named: make bench-lectures PAGES="08 10c"
	$(BIN)/python tests/bench.py lectures $(PAGES)

bench-grading: $(STAMP) sandbox  ## the grader only: 40 submissions against plain nbgrader, and where the time goes
	$(BIN)/python tests/bench.py grading

bench-cluster: $(STAMP) sandbox services  ## grading through Redis: 1 and 2 workers, the coordinator's rate, projections
	$(BIN)/python tests/bench.py cluster

notebooks: $(STAMP)  ## re-execute every lecture .md into its paired .ipynb (outputs included)
	for md in notebooks/*.md; do OMP_NUM_THREADS=1 $(BIN)/jupytext --to ipynb --execute "$$md" || exit 1; done

assignment-pages: $(STAMP)  ## book/assignments/: the student release of every assignment, as site pages
	$(BIN)/python -m grader.pages

repository: $(STAMP)  ## after changing repository.url in _config.yml (a fork): write it into every install cell
	@url=$$($(BIN)/python -c 'from grader.pages import repository_url; print(repository_url())'); \
	  sed -i -E "s#(git\+|git clone )https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+#\1$$url#g" \
	    notebooks/*.md notebooks/*.ipynb solutions/*.md book/setup.md && echo "the course now installs from $$url"
	$(MAKE) assignment-pages

clean:
	rm -rf _build test-results bench-results
