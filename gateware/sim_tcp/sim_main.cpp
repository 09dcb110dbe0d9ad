/*
 * The Verilated model's side of LiteX's sim core (sim.c's event loop calls these), for a
 * model built without trace support: the default sim build (gateware/buildcache.py).
 *
 * It stands in for LiteX's veril.cpp, which always opens sim.vcd in the build directory
 * and flushes it after every half cycle; a traced build (SimVariant(trace=True)) has
 * sim_trace_main.cpp instead. The tracer entry points are kept, doing nothing, so LiteX's
 * generated sim_init.cpp links unchanged.
 *
 * SIGTERM (how host/simulator.py stops a model) ends the run at the next cycle, so sim.c's
 * main returns and the process exits normally: an instrumented model of a profile-guided
 * build (gateware/pgo.py) writes its profile at exit, which a signal's death would skip.
 */
#include <signal.h>
#include <stdint.h>

#include "Vsim.h"
#include "verilated.h"

static uint64_t sim_time;                /* ps, for sc_time_stamp() */
static volatile sig_atomic_t terminated;

static void on_sigterm(int)
{
  terminated = 1;
}

extern "C" void litex_sim_eval(void *vsim, uint64_t time_ps)
{
  static_cast<Vsim *>(vsim)->eval();
  sim_time = time_ps;
}

extern "C" void litex_sim_init_cmdargs(int argc, char *argv[])
{
  Verilated::commandArgs(argc, argv);
  signal(SIGTERM, on_sigterm);
}

extern "C" void litex_sim_init_tracer(void *vsim, long start, long end) {}

extern "C" void litex_sim_tracer_dump() {}

extern "C" int litex_sim_got_finish()
{
  return terminated || Verilated::gotFinish();
}

double sc_time_stamp()
{
  return sim_time;
}

