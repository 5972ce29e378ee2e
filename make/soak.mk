# `make soak`: the reliability soak (issue 4). Brings up its own local stack under .healer/soak on
# ports 370xx (a `make up` dev stack is untouched), uploads 200 images (a quarter hostile), kills
# and restarts the inference service twice, injects duplicate events, audits Firestore and stops
# the stack. Last line: uploads=… done=… failed=… lost=… duplicates=… stuck=…; non-zero exit
# unless lost, duplicates and stuck are all 0. SOAK_ARGS passes options (see --help).
.PHONY: soak

SOAK_ARGS ?=

soak: $(STAMP) ## reliability soak on its own local stack: 200 uploads, 2 crashes, duplicates, audit
	$(PY) scripts/soak.py $(SOAK_ARGS)
