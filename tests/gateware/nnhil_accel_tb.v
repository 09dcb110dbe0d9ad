`timescale 1ns / 1ps
// The cocotb tests' top (sim_harness.py): nnhil_accel_top with its clock and a Wishbone master
// that runs a whole command (a burst of accesses, or a poll) in the simulator, so the Python test
// wakes once per command instead of at every clock edge. The bus sees exactly what the Python
// master of cocotb_accelerator.Host drove before: signals change on falling edges, an access
// holds cyc/stb until the falling edge after the one where ack is seen, back-to-back accesses keep
// cyc/stb high, an access without ack in 16 cycles fails, and read data keeps its X bits.
module nnhil_accel_tb #(
    parameter DEPTH = 1                 // words one command moves: the build's largest region
) ();
    // The top's inputs start undriven (X) until the test's reset drives them, as when the test
    // drove the ports: Migen's combinational `always @(*)` blocks first run on those changes.
    reg sys_clk;
    initial begin                       // 10 ns, high from time 0
        sys_clk = 1'b1;
        forever #5 sys_clk = ~sys_clk;
    end
    reg sys_rst;
    reg wb_cyc, wb_stb, wb_we;
    reg [29:0] wb_adr;
    reg [31:0] wb_dat_w;
    reg [3:0] wb_sel;
    wire wb_ack;
    wire [31:0] wb_dat_r;

    nnhil_accel_top top (
        .sys_clk(sys_clk), .sys_rst(sys_rst),
        .wb_cyc(wb_cyc), .wb_stb(wb_stb), .wb_we(wb_we), .wb_adr(wb_adr),
        .wb_dat_w(wb_dat_w), .wb_sel(wb_sel), .wb_ack(wb_ack), .wb_dat_r(wb_dat_r));

    // A command: set by the test, which then toggles cmd_go and waits for cmd_done to toggle.
    reg cmd_go = 1'b0;
    reg cmd_we = 1'b0;                  // write data[0..count-1] (else read into it)
    reg cmd_poll = 1'b0;                // read cmd_adr until (word & poll_mask) == poll_value
    reg [29:0] cmd_adr = 30'd0;         // the first word (of a burst: cmd_adr, cmd_adr + 1, ...)
    reg [31:0] cmd_count = 32'd0;       // accesses (of a poll: at most)
    reg [31:0] poll_mask = 32'd0, poll_value = 32'd0;
    reg [31:0] data [0:DEPTH-1];        // the words to write, or read (a poll's last in data[0])
    // Its outcome.
    reg cmd_done = 1'b0;
    reg [31:0] acked = 32'd0;           // accesses acknowledged
    reg no_ack = 1'b0;                  // access number `acked` saw no ack in 16 cycles

    integer wait_cycles;
    reg seen, stop;
    always @(cmd_go) begin
        acked = 0;
        no_ack = 1'b0;
        stop = 1'b0;
        while (acked < cmd_count && !stop) begin
            wb_adr = cmd_poll ? cmd_adr : cmd_adr + acked;
            wb_we = cmd_we;
            wb_dat_w = cmd_we ? data[acked] : 32'd0;
            wb_cyc = 1'b1;
            wb_stb = 1'b1;
            seen = 1'b0;
            for (wait_cycles = 0; wait_cycles < 16 && !seen; wait_cycles = wait_cycles + 1) begin
                @(negedge sys_clk);
                seen = wb_ack === 1'b1;
            end
            if (!seen) begin
                no_ack = 1'b1;
                stop = 1'b1;
            end else begin
                if (!cmd_we)
                    data[cmd_poll ? 0 : acked] = wb_dat_r;
                @(negedge sys_clk);
                acked = acked + 1;
                // a poll ends at the awaited word, or at one it cannot compare (X or Z bits)
                if (cmd_poll && (((data[0] & poll_mask) === poll_value) || ^data[0] === 1'bx))
                    stop = 1'b1;
            end
        end
        wb_cyc = 1'b0;                  // the test's next command, in this time step, sets it again
        wb_stb = 1'b0;
        cmd_done = ~cmd_done;
    end
endmodule
