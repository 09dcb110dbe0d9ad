/*
 * nnhil firmware: serves the mailbox in main RAM that host/firmware.py drives.
 *
 * CMD_CPU_INFER runs the integer model (training/intmodel.py, to the bit: conv with its
 * fused 2x2 max-pool, and dense layers) on the CPU in plain C at -O2 (infer_plain);
 * CMD_CPU_INFER_OPTIMISED runs it in infer_optimised.c, written for this CPU: the speedup's
 * baseline;
 * CMD_ACCEL_BATCH feeds images through the accelerator's loaded program as a driver
 * would. Both time each image with the timer's 64-bit uptime cycle counter.
 *
 * The host writes main RAM behind the data cache, so the cache is invalidated before
 * the mailbox and the images are read; the VexRiscv data cache is write-through, so
 * results reach RAM without a flush.
 */
#include <system.h>
#include <generated/csr.h>
#include <generated/mem.h>
#include <generated/soc.h>

#include "cpu_model.h"

static volatile uint32_t *const mb = (volatile uint32_t *)(MAIN_RAM_BASE + MAILBOX_OFFSET);
static volatile uint32_t *const accel = (volatile uint32_t *)NNHIL_BASE;

uint8_t cpu_act[2][MAX_WIDTH] __attribute__((aligned(4)));

static uint32_t now(void)
{
	timer0_uptime_latch_write(1);
	return (uint32_t)timer0_uptime_cycles_read();
}

static uint32_t argmax(const int32_t *v, uint32_t n)
{
	uint32_t best = 0;
	for (uint32_t j = 1; j < n; j++)
		if (v[j] > v[best])
			best = j;
	return best;
}

/* The c_in x k x k window of one output position as runs of contiguous inputs, in weight
 * order: `outer` groups `outer_stride` apart (input channels), each of `inner` runs
 * `inner_stride` apart (kernel rows) of `len` inputs. Runs merge where the kernel spans
 * the input: a whole-input kernel (dense) is one run of c_in * k * k. */
struct window {
	uint32_t outer, outer_stride, inner, inner_stride, len;
};

/* Not inlined: inside infer_plain() the MAC loop would lose registers to spills (~30% slower).
 * Every count is >= 1 (model_ok), hence the do-while. */
static __attribute__((noinline)) int32_t dot(const int8_t *w, const uint8_t *x,
					      const struct window *win, int32_t acc)
{
	uint32_t len = win->len, skip = win->inner_stride - len;

	for (uint32_t a = win->outer; a; a--, x += win->outer_stride) {
		const uint8_t *p = x;
		for (uint32_t b = win->inner; b; b--, p += skip) {
			const int8_t *end = w + len;
			do
				acc += *w++ * *p++;
			while (w != end);
		}
	}
	return acc;
}

/* Reject what the CPU inferences cannot run safely: empty or oversized fields, a kernel
 * larger than its input, a pool of less than 2x2, layers that do not chain, a first layer
 * reading past the image, a hidden output beyond the buffers, logits not exactly on the last.
 * These are gateware/program.py:check_layers with host/cpu_model.py:cpu_limits; the shared
 * vectors of gateware/vectors.py hold the two to the same verdicts (tests/hil). */
static int model_ok(const uint32_t *model, uint32_t image_bytes)
{
	uint32_t n_layers = model[0];
	uint64_t prev = image_bytes;

	if (n_layers < 1 || n_layers > MAX_DIM)
		return 0;
	for (uint32_t l = 0; l < n_layers; l++) {
		const struct layer *d = (const struct layer *)(model + 1) + l;
		uint32_t k = d->kernel, last = l == n_layers - 1;
		uint64_t n_in, ho, wo;
		if (!d->c_in || !d->height || !d->width || !k || !d->c_out)
			return 0;
		if (d->c_in > MAX_DIM || d->height > MAX_DIM || d->width > MAX_DIM || d->c_out > MAX_DIM)
			return 0;
		if (k > d->height || k > d->width)
			return 0;
		ho = d->height - k + 1;
		wo = d->width - k + 1;
		if (d->flags & LAYER_FLAG_POOL) {
			if (ho < 2 || wo < 2)
				return 0;
			ho /= 2;
			wo /= 2;
		}
		n_in = (uint64_t)d->c_in * d->height * d->width;
		if (l ? n_in != prev : n_in > prev)
			return 0;
		prev = d->c_out * ho * wo;
		if (!(d->flags & LAYER_FLAG_LOGITS) != !last)
			return 0;
		if (last ? (d->flags & LAYER_FLAG_POOL) != 0 : prev > MAX_WIDTH)
			return 0;
	}
	return 1;
}

/* One image through a model that passed model_ok(); writes the logits, returns their count.
 *
 * acc[o, r, c] = bias[o] + sum_{ci, ky, kx} w[o, ci, ky, kx] * x[ci, r + ky, c + kx], then
 * requantized (or kept as int32 logits by the last layer). With a pool, each output is the
 * max of the four requantized conv values (2r + dy, 2c + dx): the unpooled conv output is
 * never stored, and an odd last conv row or column is never computed. */
uint32_t infer_plain(const uint32_t *model, const uint8_t *x, int32_t *logits)
{
	uint32_t n_layers = model[0];
	for (uint32_t l = 0; l < n_layers; l++) {
		const struct layer *d = (const struct layer *)(model + 1) + l;
		uint32_t W = d->width, k = d->kernel, plane = d->height * W, size = d->c_in * k * k;
		uint32_t pool = d->flags & LAYER_FLAG_POOL, step = pool ? 2 : 1;
		uint32_t oh = (d->height - k + 1) / step, ow = (W - k + 1) / step;
		struct window win = {d->c_in, plane, k, W, k};     /* k rows of k per channel */
		const int8_t *w = d->weights;
		uint8_t *y = cpu_act[l & 1];

		if (k == W && k == d->height)                       /* whole input (dense) */
			win = (struct window){1, 0, 1, size, size};
		else if (k == W)                                    /* whole rows: k * k per channel */
			win = (struct window){d->c_in, plane, 1, k * k, k * k};
		for (uint32_t o = 0; o < d->c_out; o++, w += size) {
			int32_t bias = d->bias[o];
			uint32_t rq = d->requant[o];
			for (uint32_t r = 0; r < oh; r++) {
				const uint8_t *xp = x + r * step * W;
				for (uint32_t c = 0; c < ow; c++, xp += step) {
					if (pool) {
						uint8_t m = requantize(dot(w, xp, &win, bias), rq), v;
						v = requantize(dot(w, xp + 1, &win, bias), rq);
						m = v > m ? v : m;
						v = requantize(dot(w, xp + W, &win, bias), rq);
						m = v > m ? v : m;
						v = requantize(dot(w, xp + W + 1, &win, bias), rq);
						*y++ = v > m ? v : m;
					} else if (d->flags & LAYER_FLAG_LOGITS) {
						*logits++ = dot(w, xp, &win, bias);
					} else {
						*y++ = requantize(dot(w, xp, &win, bias), rq);
					}
				}
			}
		}
		if (d->flags & LAYER_FLAG_LOGITS)
			return d->c_out * oh * ow;
		x = cpu_act[l & 1];
	}
	return 0;
}

static uint32_t cpu_infer(infer_fn *infer)
{
	const uint32_t *model = (const uint32_t *)mb[MB_MODEL];
	const uint8_t *images = (const uint8_t *)mb[MB_IMAGES];
	uint32_t *rec = (uint32_t *)mb[MB_RESULTS];
	uint32_t n = mb[MB_N_IMAGES], stride = mb[MB_IMAGE_STRIDE];

	if (!model_ok(model, stride))
		return STATUS_BAD_MODEL;
	for (uint32_t k = 0; k < n; k++) {
		int32_t *logits = (int32_t *)(rec + RESULT_HEADER);
		uint32_t t0 = now();
		uint32_t n_out = infer(model, images + k * stride, logits);
		uint32_t t1 = now();
		rec[0] = argmax(logits, n_out);
		rec[1] = t1 - t0;
		rec[2] = 0;
		rec += RESULT_HEADER + n_out;
		mb[MB_IMAGES_DONE] = k + 1;     /* progress, polled by the host */
	}
	return STATUS_OK;
}

/* n words into the accelerator's window, eight per loop (loads first, then stores): in a
 * double-buffered batch the next image's copy runs while the accelerator computes, and must
 * stay shorter than the run. */
static void copy_words(volatile uint32_t *dst, const uint32_t *src, uint32_t n)
{
	uint32_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint32_t a = src[i], b = src[i + 1], c = src[i + 2], d = src[i + 3];
		uint32_t e = src[i + 4], f = src[i + 5], g = src[i + 6], h = src[i + 7];
		dst[i] = a; dst[i + 1] = b; dst[i + 2] = c; dst[i + 3] = d;
		dst[i + 4] = e; dst[i + 5] = f; dst[i + 6] = g; dst[i + 7] = h;
	}
	for (; i < n; i++)
		dst[i] = src[i];
}

/* The selftest's firmware faults (gateware/faults.py), each built in only with its macro. */
#ifdef NNHIL_FAULT_IMAGE_COPY_SHORT
#define IMAGE_WORDS(words) ((words) - 1)
#else
#define IMAGE_WORDS(words) (words)
#endif
#ifdef NNHIL_FAULT_LOGITS_WRONG_SLOT
#define LOGITS_BANK(slot) ((slot) ^ 1)
#else
#define LOGITS_BANK(slot) (slot)
#endif

static void accel_start(uint32_t slot)
{
	nnhil_slot_write(slot);
	nnhil_control_write(ACCEL_CTRL_START);
}

/* The loaded program on each image. With two slots (the host's program.MemoryImage.slots: the
 * program keeps act0's two input slots free) image k runs in slot k % 2 and writes logits
 * bank k % 2: on done(k) the firmware starts k + 1 in the other slot, then reads k's logits
 * and copies image k + 2 into k's slot while k + 1 runs. With one slot it copies, starts and
 * waits image by image. rec[1] is the time from the previous image's done to this one's
 * (the first image's: from the batch's start): the batch's period per image. */
static uint32_t accel_batch(void)
{
	const uint32_t *images = (const uint32_t *)mb[MB_IMAGES];
	uint32_t *rec = (uint32_t *)mb[MB_RESULTS];
	uint32_t n = mb[MB_N_IMAGES], words = mb[MB_IMAGE_STRIDE] / 4, n_layers = mb[MB_N_LAYERS];
	uint32_t slots = mb[MB_SLOTS];
	volatile uint32_t *act0 = accel + ACCEL_ACT0_OFFSET / 4;
	volatile uint32_t *out = accel + ACCEL_LOGITS_OFFSET / 4;
	uint32_t n_out, t0;

	if (n_layers < 1 || n_layers > ACCEL_MAX_LAYERS || slots < 1 || slots > 2 ||
	    words > (slots == 2 ? ACCEL_SLOT_WORDS : ACCEL_ACT0_WORDS))
		return STATUS_BAD_MODEL;
	/* the last descriptor's first word holds n_out above n_in */
	n_out = accel[ACCEL_PROGRAM_OFFSET / 4 + 4 * (n_layers - 1)] >> ACCEL_DIM_BITS;
	if (n_out > (slots == 2 ? ACCEL_SLOT_LOGITS : ACCEL_LOGIT_WORDS))
		return STATUS_BAD_MODEL;
	nnhil_n_layers_write(n_layers);
	if (!n)
		return STATUS_OK;
	t0 = now();
	copy_words(act0, images, IMAGE_WORDS(words));
	accel_start(0);
	if (slots == 2 && n > 1)
		copy_words(act0 + ACCEL_SLOT_WORDS, images + words, IMAGE_WORDS(words));
	for (uint32_t k = 0; k < n; k++) {
		uint32_t slot = slots == 2 ? k & 1 : 0, status, t1;
		volatile uint32_t *logits = out + LOGITS_BANK(slot) * ACCEL_SLOT_LOGITS;
		while (!((status = nnhil_status_read()) & ACCEL_STATUS_DONE))
			;
		rec[2] = nnhil_cycles_read();
		rec[0] = nnhil_argmax_read();
		if ((status >> ACCEL_STATUS_ERROR_SHIFT) & ((1 << ACCEL_STATUS_ERROR_BITS) - 1))
			return STATUS_ACCEL_ERROR;
		if (slots == 2 && k + 1 < n)
			accel_start(slot ^ 1);
		t1 = now();
		for (uint32_t j = 0; j < n_out; j++)
			rec[RESULT_HEADER + j] = logits[j];
		if (slots == 2) {
			if (k + 2 < n)
				copy_words(act0 + slot * ACCEL_SLOT_WORDS, images + (k + 2) * words, IMAGE_WORDS(words));
		} else if (k + 1 < n) {
			copy_words(act0, images + (k + 1) * words, IMAGE_WORDS(words));
			accel_start(0);
		}
		rec[1] = t1 - t0;
		t0 = t1;
		rec += RESULT_HEADER + n_out;
		mb[MB_IMAGES_DONE] = k + 1;     /* progress, polled by the host */
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
		case CMD_CPU_INFER:   status = cpu_infer(infer_plain); break;
		case CMD_CPU_INFER_OPTIMISED: status = cpu_infer(infer_optimised); break;
		case CMD_ACCEL_BATCH: status = accel_batch(); break;
		default:              status = STATUS_BAD_COMMAND;
		}
		mb[MB_STATUS] = status;
		mb[MB_DONE] = done = request;
	}
	return 0;
}
