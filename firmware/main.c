/*
 * nnhil firmware: serves the mailbox in main RAM that host/firmware.py drives.
 *
 * CMD_CPU_INFER runs the integer model (training/intmodel.py, to the bit) on the CPU;
 * CMD_ACCEL_BATCH feeds images through the accelerator's loaded program as a driver
 * would. Both time each image with the timer's 64-bit uptime cycle counter.
 *
 * The host writes main RAM behind the data cache, so the cache is invalidated before
 * the mailbox and the images are read; the VexRiscv data cache is write-through, so
 * results reach RAM without a flush.
 */
#include <stdint.h>

#include <system.h>
#include <generated/csr.h>
#include <generated/mem.h>
#include <generated/soc.h>

#include "mailbox.h"

static volatile uint32_t *const mb = (volatile uint32_t *)(MAIN_RAM_BASE + MAILBOX_OFFSET);
static volatile uint32_t *const accel = (volatile uint32_t *)NNHIL_BASE;

static uint8_t act[2][MAX_WIDTH];

struct layer {
	uint32_t n_in, n_out;
	const int8_t *weights;
	const int32_t *bias;
	const uint32_t *requant;        /* mult | shift << 16 */
	uint32_t logits;
};

static uint32_t now(void)
{
	timer0_uptime_latch_write(1);
	return (uint32_t)timer0_uptime_cycles_read();
}

/* fixedpoint.requantize: round half up, ReLU, saturate to uint8. */
static uint8_t requantize(int32_t acc, uint32_t rq)
{
	uint32_t mult = rq & 0xffff, shift = (rq >> 16) & 0x3f;
	int64_t y = ((int64_t)acc * mult + ((int64_t)1 << (shift - 1))) >> shift;
	return y < 0 ? 0 : y > 255 ? 255 : (uint8_t)y;
}

static uint32_t argmax(const int32_t *v, uint32_t n)
{
	uint32_t best = 0;
	for (uint32_t j = 1; j < n; j++)
		if (v[j] > v[best])
			best = j;
	return best;
}

/* One image through the model; writes the logits and returns their count, or 0. */
static uint32_t infer(const uint32_t *model, const uint8_t *x, int32_t *logits)
{
	uint32_t n_layers = model[0];
	for (uint32_t l = 0; l < n_layers; l++) {
		const struct layer *d = (const struct layer *)(model + 1 + l * LAYER_WORDS);
		uint8_t *y = act[l & 1];
		if (d->n_in > MAX_WIDTH || d->n_out > MAX_WIDTH)
			return 0;
		for (uint32_t j = 0; j < d->n_out; j++) {
			const int8_t *w = d->weights + j * d->n_in;
			int32_t acc = d->bias[j];
			for (uint32_t i = 0; i < d->n_in; i++)
				acc += w[i] * x[i];
			if (d->logits)
				logits[j] = acc;
			else
				y[j] = requantize(acc, d->requant[j]);
		}
		if (d->logits)
			return d->n_out;
		x = y;
	}
	return 0;
}

static uint32_t cpu_infer(void)
{
	const uint32_t *model = (const uint32_t *)mb[MB_MODEL];
	const uint8_t *images = (const uint8_t *)mb[MB_IMAGES];
	uint32_t *rec = (uint32_t *)mb[MB_RESULTS];
	uint32_t n = mb[MB_N_IMAGES], stride = mb[MB_IMAGE_STRIDE];

	for (uint32_t k = 0; k < n; k++) {
		int32_t *logits = (int32_t *)(rec + RESULT_HEADER);
		uint32_t t0 = now();
		uint32_t n_out = infer(model, images + k * stride, logits);
		uint32_t t1 = now();
		if (!n_out)
			return STATUS_BAD_MODEL;
		rec[0] = argmax(logits, n_out);
		rec[1] = t1 - t0;
		rec[2] = 0;
		rec += RESULT_HEADER + n_out;
	}
	return STATUS_OK;
}

static uint32_t accel_batch(void)
{
	const uint32_t *images = (const uint32_t *)mb[MB_IMAGES];
	uint32_t *rec = (uint32_t *)mb[MB_RESULTS];
	uint32_t n = mb[MB_N_IMAGES], words = mb[MB_IMAGE_STRIDE] / 4, n_layers = mb[MB_N_LAYERS];
	volatile uint32_t *act0 = accel + ACCEL_ACT0_OFFSET / 4;
	volatile uint32_t *out = accel + ACCEL_LOGITS_OFFSET / 4;
	uint32_t n_out;

	if (n_layers < 1 || n_layers > ACCEL_MAX_LAYERS || words > ACCEL_ACT0_WORDS)
		return STATUS_BAD_MODEL;
	/* the last descriptor's first word holds n_out above n_in */
	n_out = accel[ACCEL_PROGRAM_OFFSET / 4 + 4 * (n_layers - 1)] >> ACCEL_DIM_BITS;
	if (n_out > ACCEL_LOGIT_WORDS)
		return STATUS_BAD_MODEL;
	nnhil_n_layers_write(n_layers);
	for (uint32_t k = 0; k < n; k++) {
		const uint32_t *src = images + k * words;
		uint32_t t0 = now(), status;
		for (uint32_t i = 0; i < words; i++)
			act0[i] = src[i];
		nnhil_control_write(ACCEL_CTRL_START);
		while (!((status = nnhil_status_read()) & ACCEL_STATUS_DONE))
			;
		rec[0] = nnhil_argmax_read();
		rec[2] = nnhil_cycles_read();
		for (uint32_t j = 0; j < n_out; j++)
			rec[RESULT_HEADER + j] = out[j];
		rec[1] = now() - t0;
		if ((status >> ACCEL_STATUS_ERROR_SHIFT) & ((1 << ACCEL_STATUS_ERROR_BITS) - 1))
			return STATUS_ACCEL_ERROR;
		rec += RESULT_HEADER + n_out;
	}
	return STATUS_OK;
}

int main(void)
{
	uint32_t done = 0;

	mb[MB_DONE] = done;
	mb[MB_MAGIC] = FW_MAGIC;
	for (;;) {
		uint32_t request, status;
		flush_cpu_dcache();
		request = mb[MB_REQUEST];
		if (request == done)
			continue;
		flush_cpu_dcache();
		switch (mb[MB_COMMAND]) {
		case CMD_CPU_INFER:   status = cpu_infer(); break;
		case CMD_ACCEL_BATCH: status = accel_batch(); break;
		default:              status = STATUS_BAD_COMMAND;
		}
		mb[MB_STATUS] = status;
		mb[MB_DONE] = done = request;
	}
	return 0;
}
