# Quick start:  make demo  (the whole pipeline on built-in synthetic faces)  |  make test
# Any preset:   make pipeline PRESET=celeba-cpu [SRC=../shared/data/celeba64]
# A stage is redone only when its stamp (params/<preset>/.done_<stage>) is missing; training
# stages run with --resume, so an interrupted one continues where its checkpoint stopped.

PY      := .venv/bin/python
VENV    := .venv/.installed
PRESET  ?= demo
SRC     ?= ../shared/data/celeba64
P       := params/$(PRESET)
ARGS    := --preset $(PRESET)

ifeq ($(PRESET),celeba-cpu)
DATA    := dataset/celeba32
PREPARE := dataset/prepare_celeba.py --preset celeba-cpu --src $(SRC)
else ifeq ($(PRESET),tiny)
DATA    := dataset/tiny
PREPARE := dataset/make_synthetic.py --preset tiny
else
DATA    := dataset/synthetic32
PREPARE := dataset/make_synthetic.py --preset demo
endif

.PHONY: demo test pipeline stages clean-demo
.DELETE_ON_ERROR:

demo: $(VENV)
	$(MAKE) pipeline PRESET=demo

test: $(VENV)
	$(PY) -m pytest -q tests

$(VENV): requirements.txt requirements-facenet.txt
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -r requirements.txt
	.venv/bin/pip install -q --no-deps -r requirements-facenet.txt   # optional FaceNet oracle
	touch $@

# ---- step 0: data ---------------------------------------------------------------------------
$(DATA)/dataset.json: | $(VENV)
	$(PY) $(PREPARE)
	$(PY) dataset/validate.py $(DATA)

# ---- steps 1-7: target net, oracle, attacker models ------------------------------------------
$(P)/.done_enc: $(DATA)/dataset.json
	$(PY) Crafter_protection/trainTargetNet.py $(ARGS) --resume && touch $@
$(P)/.done_eval: $(DATA)/dataset.json
	$(PY) Image2ID/evalTrain.py $(ARGS) --resume && touch $@
$(P)/.done_gan: $(DATA)/dataset.json
	$(PY) WhiteBoxAttack/train_gan.py $(ARGS) --resume && touch $@
$(P)/.done_amor: $(P)/.done_enc $(P)/.done_gan
	$(PY) WhiteBoxAttack/trainAmor.py $(ARGS) --resume && touch $@
$(P)/.done_attack: $(P)/.done_amor $(P)/.done_eval
	$(PY) WhiteBoxAttack/attacker.py $(ARGS) && touch $@
$(P)/.done_dec: $(P)/.done_enc $(P)/.done_eval
	$(PY) BlackBoxAttack/trainDecoder.py $(ARGS) --resume && touch $@
$(P)/.done_f2id: $(P)/.done_enc
	$(PY) Feature2ID/f2id_train.py $(ARGS) --resume && touch $@

STAGES := enc eval gan amor attack dec f2id
stages: $(addprefix $(P)/.done_,$(STAGES))

pipeline: $(VENV)
	$(MAKE) stages PRESET=$(PRESET)
	@echo "pipeline $(PRESET): done (checkpoints in $(P))"

clean-demo:
	rm -rf params/demo results/demo Crafter_result/demo
