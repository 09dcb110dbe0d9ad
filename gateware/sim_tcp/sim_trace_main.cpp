/*
 * The Verilated model's side of LiteX's sim core (sim.c's event loop calls these) for the
 * traced sim build (gateware.buildcache.SimVariant(trace=True)), in place of LiteX's veril.cpp.
 *
 * It differs from veril.cpp where that one cannot serve a run of ours:
 *  - the FST goes to the file $NNHIL_TRACE_FILE names, one per run (veril.cpp writes sim.fst
 *    in the build directory, shared by every run of the build); without it nothing is dumped;
 *  - it dumps only while the gateware's trace window (gateware/tracewindow.py) drives the
 *    sim_trace pad high, and closes the file when the window closes: it is written as
 *    <file>.part and renamed to <file> once complete, so the host waits for the name;
 *  - it prints nothing on stdout (veril.cpp prints "<DUMP ON>" without a newline, on the
 *    line where host/simulator.py looks for the sim_tcp module's port).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string>

#include "Vsim.h"
#include "verilated.h"
#include "verilated_fst_c.h"

static uint64_t sim_time;                /* ps, for sc_time_stamp() */
static Vsim *model;
static VerilatedFstC *tfp;
static std::string path;                 /* the finished trace's name; empty: no trace */
static bool dumping, closed;

extern "C" void litex_sim_eval(void *vsim, uint64_t time_ps)
{
  static_cast<Vsim *>(vsim)->eval();
  sim_time = time_ps;
}

extern "C" void litex_sim_init_cmdargs(int argc, char *argv[])
{
  Verilated::commandArgs(argc, argv);
}

/* LiteX's compiled-in start and end times are ignored: the window is the gateware's. */
extern "C" void litex_sim_init_tracer(void *vsim, long start, long end)
{
  const char *file = getenv("NNHIL_TRACE_FILE");
  model = static_cast<Vsim *>(vsim);
  if (!file || !*file)
    return;
  path = file;
  Verilated::traceEverOn(true);
}

static void open_trace()
{
  tfp = new VerilatedFstC;
  model->trace(tfp, 99);
  tfp->set_time_unit("1ps");
  tfp->set_time_resolution("1ps");
  tfp->open((path + ".part").c_str());
}

static void close_trace()
{
  tfp->close();
  delete tfp;
  tfp = nullptr;
  if (rename((path + ".part").c_str(), path.c_str()) != 0)
    perror("sim_trace_main: rename");    /* stderr: the host reports the missing file */
  closed = true;
}

extern "C" void litex_sim_tracer_dump()
{
  if (path.empty() || closed)
    return;
  if (model->sim_trace) {
    if (!tfp)
      open_trace();
    dumping = true;
    tfp->dump(sim_time);
  } else if (dumping) {
    tfp->dump(sim_time);                 /* the first half cycle past the window, then close */
    close_trace();
  }
}

extern "C" int litex_sim_got_finish()
{
  if (Verilated::gotFinish() && tfp)
    close_trace();
  return Verilated::gotFinish();
}

double sc_time_stamp()
{
  return sim_time;
}
