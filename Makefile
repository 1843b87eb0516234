# Quick start:  make demo  (the whole pipeline on built-in synthetic faces)  |  make test
# Any preset:   make pipeline PRESET=celeba-cpu [SRC=../shared/data/celeba64] | PRESET=lfw-cpu
# Paper scale:  make pipeline PRESET=paper SRC=<CelebA folder> [N_PRIVATE=1000]  (GPU; check it with make gpu-check)
# A stage is redone when its stamp (params/<preset>/.done_<stage>) is missing or older than its
# inputs: the stamps it needs, its script and every module that script imports (.deps.mk, made by
# common/deps.py), so editing the HP block at the top of a script reruns that stage and what
# depends on it. Training stages run with --resume: an interrupted one continues where its
# checkpoint stopped, and one whose settings changed says so and trains anew only when asked.

PY      ?= .venv/bin/python
VENV    := .venv/.installed
PRESET  ?= demo
SRC     ?= ../shared/data/celeba64
P       ?= params/$(PRESET)$(P_SUFFIX)
RESULTS ?= results
CRAFTED ?= Crafter_result
ARGS     = --preset $(PRESET) --data_dir $(DATA) --params_dir $(P) --results_dir $(RESULTS) \
           --crafted_dir $(CRAFTED)

# Per preset: NPUB public images the adaptive attacker sends through each protection (one per
# identity); TRAIN which eval_train images a protection releases for the training scenario and
# adaptive Feature2ID (>= 2 per identity so it can hold one out); A2_WIDTH the width of the
# independent prior gan_a2.pt (the paper's A2). The knob values of each protection (which points
# run, which get every adaptive attack) are declared in the protection's own file (PROTECTION in
# Crafter_protection/*.py, Baselines/*.py); override one with e.g. POINTS_noise_s="2 3".
ifneq ($(filter celeba-cpu lfw-cpu,$(PRESET)),)
NPUB    ?= 256
TRAIN   ?= --n_per_id 4
A2_WIDTH ?= 24
else ifeq ($(PRESET),tiny)
NPUB    ?= 16
TRAIN   ?= --n_per_id 2
A2_WIDTH ?= 12
else ifeq ($(PRESET),paper)
NPUB    ?= 1000
TRAIN   ?= --n_per_id 4
A2_WIDTH ?= 48
else
# demo: 2 eval_train images per identity keep `make demo` short (its time: docs/RESULTS.md)
NPUB    ?= 128
TRAIN   ?= --n_per_id 2
A2_WIDTH ?= 12
endif

# The data branch follows the data source, not the preset name: SRC given on the command line,
# or a celeba-* / paper preset, prepares real CelebA from SRC (dataset/prepare_celeba.py; its
# own preset where it has one, N_PRIVATE private identities if given); otherwise the built-in
# synthetic faces. A preset run on CelebA that is not a CelebA preset gets its own params folder.
ifneq ($(filter lfw-cpu paper-lfw,$(PRESET)),)
DATA_SOURCE := lfw
else ifeq ($(origin SRC),command line)
DATA_SOURCE := celeba
else ifneq ($(filter celeba-% paper,$(PRESET)),)
DATA_SOURCE := celeba
else
DATA_SOURCE := synthetic
endif
ifeq ($(DATA_SOURCE),lfw)
# real LFW (dataset/prepare_lfw.py): 38 private identities with attributes, public images without
LFW_SRC ?= $(if $(filter command line,$(origin SRC)),$(SRC),../shared/data/lfw)
DATA    ?= $(if $(filter lfw-cpu,$(PRESET)),dataset/lfw32,dataset/lfw128)
PREPARE := dataset/prepare_lfw.py --src $(LFW_SRC) --preset $(PRESET)
else ifeq ($(DATA_SOURCE),celeba)
DATA    ?= $(if $(filter celeba-cpu,$(PRESET)),dataset/celeba32,$(if $(filter paper,$(PRESET)),dataset/celeba64,dataset/celeba_$(PRESET)))
PREPARE := dataset/prepare_celeba.py --src $(SRC) $(addprefix --preset ,$(filter tiny celeba-cpu,$(PRESET))) $(if $(N_PRIVATE),--n_private $(N_PRIVATE))
P_SUFFIX := $(if $(filter celeba-% paper,$(PRESET)),,-celeba)
else
DATA    ?= $(if $(filter tiny,$(PRESET)),dataset/tiny,dataset/synthetic32)
PREPARE := dataset/make_synthetic.py --preset $(if $(filter tiny,$(PRESET)),tiny,demo)
endif
# JOBS: stages run at once (make -j), each with THREADS torch threads (cores / JOBS), so they
# never oversubscribe the cores; with JOBS > 1 a stage's output is shown when it finishes.
# Two one-thread stages side by side do ~30 % more work per second on 2 cores than one
# two-thread stage (small convolutions scale poorly across threads), so `make demo` uses 2.
JOBS      ?= 1
DEMO_JOBS ?= 2
NPROC   := $(shell nproc 2>/dev/null || echo 2)
THREADS ?= $(shell n=$$(( $(NPROC) / $(JOBS) )); [ $$n -ge 1 ] && echo $$n || echo 1)
ifeq ($(JOBS),1)
PARALLEL = $(MAKE)
else
PARALLEL = OMP_NUM_THREADS=$(THREADS) $(MAKE) -j$(JOBS) --output-sync=target
endif

.PHONY: demo test pipeline sweep stages protections sweep-protections clean-demo gpu-check
.DELETE_ON_ERROR:
.SECONDARY:

demo: $(VENV)
	$(MAKE) pipeline PRESET=demo JOBS=$(DEMO_JOBS)

test: $(VENV)
	$(PY) -m pytest -q tests

$(VENV): requirements.txt requirements-facenet.txt requirements-dlib.txt pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -r requirements.txt
	.venv/bin/pip install -q --no-deps -r requirements-facenet.txt   # optional FaceNet oracle
	.venv/bin/pip install -q -r requirements-dlib.txt   # optional pretrained evaluator (Image2ID/dlibEval.py)
	# the repository as one package (imports run the same way from every script and test); compat:
	# a plain path entry, so a copy of the tree on PYTHONPATH (tests/mutation_check.py) comes first
	.venv/bin/pip install -q 'setuptools>=70.1'
	.venv/bin/pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $@

# what each script runs: DEPS_<script> := the script and the project modules it imports
.deps.mk: $(wildcard *.py */*.py)
	python3 common/deps.py > $@
include .deps.mk
# a stamp depends on the code of every script its recipe runs
D = $(foreach s,$(1),$(DEPS_$(s)))

# ---- step 1: data ---------------------------------------------------------------------------
$(DATA)/dataset.json: | $(VENV)
	$(PY) $(PREPARE) --out $(DATA)
	$(PY) dataset/validate.py $(DATA)

# ---- steps 2-10: target net, oracle, attacker models ------------------------------------------
$(P)/.done_enc: $(DATA)/dataset.json $(call D,Crafter_protection/trainTargetNet.py)
	$(PY) Crafter_protection/trainTargetNet.py $(ARGS) --resume && touch $@
$(P)/.done_eval: $(DATA)/dataset.json $(call D,Image2ID/evalTrain.py)
	$(PY) Image2ID/evalTrain.py $(ARGS) --resume && touch $@
$(P)/.done_gan: $(DATA)/dataset.json $(call D,WhiteBoxAttack/train_gan.py)
	$(PY) WhiteBoxAttack/train_gan.py $(ARGS) --resume && touch $@
$(P)/.done_amor: $(P)/.done_enc $(P)/.done_gan $(call D,WhiteBoxAttack/trainAmor.py)
	$(PY) WhiteBoxAttack/trainAmor.py $(ARGS) --resume && touch $@
$(P)/.done_attack: $(P)/.done_amor $(P)/.done_eval $(call D,WhiteBoxAttack/attacker.py)
	$(PY) WhiteBoxAttack/attacker.py $(ARGS) && touch $@
$(P)/.done_dec: $(P)/.done_enc $(P)/.done_eval $(call D,BlackBoxAttack/trainDecoder.py)
	$(PY) BlackBoxAttack/trainDecoder.py $(ARGS) --resume && touch $@
$(P)/.done_f2id: $(P)/.done_enc $(call D,Feature2ID/f2id_train.py)
	$(PY) Feature2ID/f2id_train.py $(ARGS) --resume && touch $@
# the defender's identity model of features (public identities only), for Crafter's identity term
$(P)/.done_f2id_public: $(P)/.done_enc $(call D,Feature2ID/f2id_train.py)
	$(PY) Feature2ID/f2id_train.py $(ARGS) --split public --resume && touch $@
# the independent prior of the paper's A2 (whitebox_a2): another seed and width than gan.pt
$(P)/.done_gan_a2: $(DATA)/dataset.json $(call D,WhiteBoxAttack/train_gan.py)
	$(PY) WhiteBoxAttack/train_gan.py $(ARGS) --name gan_a2.pt --seed 1 --width $(A2_WIDTH) --resume && touch $@
$(P)/.done_amor_a2: $(P)/.done_enc $(P)/.done_gan_a2 $(call D,WhiteBoxAttack/trainAmor.py)
	$(PY) WhiteBoxAttack/trainAmor.py $(ARGS) --gan gan_a2.pt --name amor_a2.pt --resume && touch $@

# step 10: the adaptive attacker's own identity model, on public identities only (steps 15, 16
# early-stop and steer adaptation on identity with it)
$(P)/.done_attacker_id: $(DATA)/dataset.json $(call D,Image2ID/evalTrain.py)
	$(PY) Image2ID/evalTrain.py $(ARGS) --split public --name attacker_id.pkl --resume && touch $@

# longest chain (gan -> amor -> crafting) first; f2id_public is built when a protection needs it
STAGES := gan enc eval amor attack dec f2id gan_a2 amor_a2 attacker_id
stages: $(addprefix $(P)/.done_,$(STAGES))

# ---- steps 11-13: protections, from their declarations (.deps.mk) ----------------------------
# POINTS_<prefix>: its knob values on eval_test; FULL_<prefix>: those that also release the public
# queries and eval_train and face every adaptive attack; TRAIN_<prefix>: those that release
# eval_train for adaptive Feature2ID (default: FULL); SWEEP_<prefix>: extra points of `make sweep`.
# A protection that trains its own encoder (OWN) releases every split in one run, and each of its
# points gets every attack.
# (lfw-cpu takes celeba-cpu's points, as its stages take celeba-cpu's sizes: common/config.py)
SIZES   := $(if $(filter lfw-cpu,$(PRESET)),celeba-cpu,$(PRESET))
$(foreach p,$(PREFIXES),$(eval POINTS_$(p) ?= $(POINTS_$(p)_$(SIZES))) \
  $(eval FULL_$(p) ?= $(if $(filter $(p),$(OWN)),$(POINTS_$(p)),$(FULL_$(p)_$(SIZES)))) \
  $(eval TRAIN_$(p) ?= $(or $(TRAIN_$(p)_$(SIZES)),$(FULL_$(p)))) \
  $(eval SWEEP_$(p) ?= $(SWEEP_$(p)_$(SIZES))))
own = $(strip $(foreach p,$(OWN),$(if $(filter $(p)%,$(1)),$(p))))
# the stamp of a protection's release of a split (own-encoder: the one run of all splits)
stamp = $(if $(filter none,$(1)),,$(P)/.done_$(if $(call own,$(1)),release_$(1),$(1)_$(2)))

# Crafter's training scenario: the cloud model trained on the recommended beta's eval_train release
BETA    ?= $(firstword $(FULL_crafter_beta))
$(P)/.done_training_scenario: $(P)/.done_crafter_beta$(BETA)_eval_train \
                              $(P)/.done_crafter_beta$(BETA)_eval_test $(call D,Crafter_protection/trainClassifier.py)
	$(PY) Crafter_protection/trainClassifier.py $(ARGS) --protection crafter_beta$(BETA) && touch $@

# ---- steps 15-17: adaptive attacks ------------------------------------------------------------
.SECONDEXPANSION:
# a protection that trains its own encoder: the white-box attacker gets amortizers for its Enc,
# and the adaptive black-box attacker a fresh decoder on (Enc(x_pub), x_pub) (AdvLearn: the
# paper's 46 %), then the adaptive G
$(P)/.done_attacks_%: $(P)/.done_release_% $(P)/.done_gan $(P)/.done_eval $(P)/.done_gan_a2 \
                      $(P)/.done_attacker_id $(call D,BlackBoxAttack/trainDecoder.py WhiteBoxAttack/adaptiveUpdateG.py WhiteBoxAttack/trainAmor.py)
	$(PY) WhiteBoxAttack/trainAmor.py $(ARGS) --enc $*.pt --name amor_$*.pt
	$(PY) WhiteBoxAttack/trainAmor.py $(ARGS) --gan gan_a2.pt --enc $*.pt --name amor_a2_$*.pt
	$(PY) BlackBoxAttack/trainDecoder.py $(ARGS) --enc $*.pt --name dec_adaptive_$*.pkl
	$(PY) WhiteBoxAttack/adaptiveUpdateG.py $(ARGS) --protection $* --n_images $(NPUB) && touch $@
$(P)/.done_adaptive_%: $(P)/.done_amor $(P)/.done_dec $(P)/.done_attacker_id $$(call stamp,$$*,public) \
                       $(call D,BlackBoxAttack/adaptiveTrainDecoder.py WhiteBoxAttack/adaptiveUpdateG.py)
	$(PY) WhiteBoxAttack/adaptiveUpdateG.py $(ARGS) --protection $* --n_images $(NPUB)
	$(PY) BlackBoxAttack/adaptiveTrainDecoder.py $(ARGS) --protection $* --n_images $(NPUB) && touch $@
$(P)/.done_f2id_adaptive_%: $(P)/.done_f2id $$(call stamp,$$*,eval_train) $(call D,Feature2ID/f2id_adaptive.py)
	$(PY) Feature2ID/f2id_adaptive.py $(ARGS) --protection $* $(TRAIN) && touch $@

# every point's stamps: eval_test (or its own-encoder run) for all, the adaptive attacks for FULL,
# adaptive Feature2ID for TRAIN
names = $(foreach v,$(2),$(1)$(v))
point_stamps = $(foreach n,$(call names,$(1),$(2)),$(if $(call own,$(n)),$(P)/.done_attacks_$(n) \
                 $(P)/.done_f2id_adaptive_$(n),$(P)/.done_$(n)_eval_test))
full_stamps = $(foreach n,$(call names,$(1),$(2)),$(if $(call own,$(n)),,$(P)/.done_adaptive_$(n)))
train_stamps = $(foreach n,$(call names,$(1),$(2)),$(P)/.done_f2id_adaptive_$(n))
PROTECTIONS := $(P)/.done_adaptive_none $(P)/.done_f2id_adaptive_none \
               $(if $(BETA),$(P)/.done_training_scenario) \
               $(foreach p,$(PREFIXES),$(call point_stamps,$(p),$(POINTS_$(p))) \
                 $(call full_stamps,$(p),$(FULL_$(p))) $(call train_stamps,$(p),$(TRAIN_$(p))))
SWEEP := $(foreach p,$(PREFIXES),$(call point_stamps,$(p),$(SWEEP_$(p))) \
           $(call full_stamps,$(p),$(if $(call own,$(p)),,$(SWEEP_$(p)))) $(call train_stamps,$(p),$(SWEEP_$(p))))
protections: stages $(PROTECTIONS)
sweep-protections: protections $(SWEEP)

# ---- step 18: the report (always rerun: it reads whatever is there) ---------------------------
pipeline: $(VENV)
	$(PARALLEL) protections PRESET=$(PRESET)
	$(PY) evaluate.py $(ARGS)
	@echo "pipeline $(PRESET) done: the report path is printed just above (evaluate done: report=...)"

# the pipeline plus every protection's SWEEP points (celeba-cpu: the defences' knob sweeps)
sweep: $(VENV)
	$(PARALLEL) sweep-protections PRESET=$(PRESET)
	$(PY) evaluate.py $(ARGS)

# a few steps of every heavy stage at paper settings on one GPU (<= 8 min); SMOKE=1 on a CPU
gpu-check: $(VENV)
	SMOKE=$(or $(SMOKE),0) bash benchmarks/gpu_check.sh

clean-demo:
	rm -rf params/demo results/demo Crafter_result/demo
