/*
 * The integer model on the CPU as fast as plain C makes it: the speedup's baseline
 * (CMD_CPU_INFER_OPTIMISED). main.c's infer_plain is the straightforward loop, kept and
 * measured beside it. Both are bit-exact with training/intmodel.py.
 *
 * The CPU is LiteX's VexRiscv "standard" (gateware/soc.py; VexRiscv's GenCoreDefault): RV32IM
 * in five bypassed stages, a pipelined 32x32 multiplier (MulPlugin: one product per cycle,
 * summed over the execute, memory and writeback stages), an iterative divider, static branch
 * prediction, and direct-mapped 4 KiB instruction and data caches of 32-byte lines. Loads and
 * products reach the bypass only from the writeback stage (their BYPASSABLE_MEMORY_STAGE is
 * false), so an instruction right after one that uses its result waits two cycles, one
 * instruction later one cycle. The plain loop (lb, lbu, mul, add, three of overhead) waits at
 * each step: 11.5 cycles per MAC. What helps here (cycles of one Fashion-MNIST image on the
 * sim, plain -> optimised: MLP 1,168,348 -> 563,393, CNN 7,717,622 -> 2,209,343):
 *   - Several outputs at once, each with its own accumulator: each input byte loaded serves
 *     four dense neurons or the four conv positions of a pool window, and the independent
 *     loads and products fill each other's latency instead of stalling on one sum.
 *   - Unrolled inner loops (the code stays in the 4 KiB I cache): one loop branch and five
 *     pointer increments per 16 dense MACs instead of three instructions of overhead per MAC.
 *   - The four conv positions of a 2x2 pool window slide along each kernel row together: two
 *     new input loads per weight instead of four; then one requantization of their maximum
 *     (requantization is monotonic, mult >= 0) instead of four.
 *   - The MAC loops out of line (noinline): inlined into one large function, GCC spilled
 *     their accumulators to the stack (MLP 786,001 cycles).
 *   - Byte loads: lb/lbu sign- and zero-extend for free, whereas a word of four int8 weights
 *     takes a shift pair per byte to unpack, more than the three loads it saves, and a cache
 *     line costs one refill either way. Word-wide loads of the weights and inputs in the
 *     dense loop measured 723,816 cycles for the MLP.
 *   - -O3 (firmware/Makefile): it unrolls the 2x2 kernel loops, -O2 does not (CNN 3,600,753
 *     cycles at -O2; the MLP the same at both).
 */
#include "cpu_model.h"

/* Output i, of channel o: an int32 logit, or requantized into the hidden activations. */
static inline void put(const struct layer *d, uint32_t o, uint32_t i, int32_t acc, uint8_t *y,
		       int32_t *logits)
{
	if (logits)
		logits[i] = acc;
	else
		y[i] = requantize(acc, d->requant[o]);
}

/* Four neurons at a time over the n inputs x, each input byte loaded once for all four; the
 * last n_out % 4 one at a time. Four named row pointers and accumulators: an array of them,
 * looped over, stayed on the stack. */
static __attribute__((noinline)) void dense(const struct layer *d, const uint8_t *x, uint8_t *y,
					    int32_t *logits)
{
	uint32_t n = d->c_in * d->height * d->width, o = 0;
	const uint8_t *x_end = x + n, *x_end4 = x + (n & ~3u);
	const int8_t *w0 = d->weights;

	for (; o + 4 <= d->c_out; o += 4, w0 += 3 * n) {
		const int8_t *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
		const uint8_t *p = x;
		int32_t a0 = d->bias[o], a1 = d->bias[o + 1], a2 = d->bias[o + 2], a3 = d->bias[o + 3];
		for (; p != x_end4; p += 4, w0 += 4, w1 += 4, w2 += 4, w3 += 4) {
			int32_t x0 = p[0], x1 = p[1], x2 = p[2], x3 = p[3];
			a0 += w0[0] * x0 + w0[1] * x1 + w0[2] * x2 + w0[3] * x3;
			a1 += w1[0] * x0 + w1[1] * x1 + w1[2] * x2 + w1[3] * x3;
			a2 += w2[0] * x0 + w2[1] * x1 + w2[2] * x2 + w2[3] * x3;
			a3 += w3[0] * x0 + w3[1] * x1 + w3[2] * x2 + w3[3] * x3;
		}
		for (; p != x_end; p++) {
			int32_t xi = *p;
			a0 += *w0++ * xi;
			a1 += *w1++ * xi;
			a2 += *w2++ * xi;
			a3 += *w3++ * xi;
		}
		put(d, o, o, a0, y, logits);
		put(d, o + 1, o + 1, a1, y, logits);
		put(d, o + 2, o + 2, a2, y, logits);
		put(d, o + 3, o + 3, a3, y, logits);
	}
	for (; o < d->c_out; o++) {
		int32_t a0 = d->bias[o];
		for (const uint8_t *p = x; p != x_end; p++)
			a0 += *w0++ * *p;
		put(d, o, o, a0, y, logits);
	}
}

/* Channel o of a k x k conv with a 2x2 max-pool, at pooled position (r, c): the four conv
 * positions (2r + dy, 2c + dx) accumulate together, sliding along each kernel row. */
static inline __attribute__((always_inline)) uint8_t conv_pool_one(const struct layer *d,
								    uint32_t o, uint32_t k,
								    const uint8_t *x, uint32_t r,
								    uint32_t c)
{
	uint32_t W = d->width, plane = d->height * W;
	const int8_t *w = d->weights + o * d->c_in * k * k;
	int32_t a00, a01, a10, a11, m0, m1;

	a00 = a01 = a10 = a11 = d->bias[o];
	for (uint32_t ci = 0; ci < d->c_in; ci++) {
		const uint8_t *p = x + ci * plane + 2 * r * W + 2 * c;
		for (uint32_t ky = 0; ky < k; ky++, p += W, w += k) {
			int32_t u0 = p[0], v0 = p[W];       /* rows 2r + ky and 2r + ky + 1 */
			for (uint32_t kx = 0; kx < k; kx++) {
				int32_t wt = w[kx], u1 = p[kx + 1], v1 = p[W + kx + 1];
				a00 += wt * u0;
				a01 += wt * u1;
				a10 += wt * v0;
				a11 += wt * v1;
				u0 = u1;
				v0 = v1;
			}
		}
	}
	m0 = a00 > a01 ? a00 : a01;
	m1 = a10 > a11 ? a10 : a11;
	return requantize(m0 > m1 ? m0 : m1, d->requant[o]);
}

static inline __attribute__((always_inline)) void conv_pool(const struct layer *d, uint32_t k,
							     const uint8_t *x, uint8_t *y)
{
	uint32_t oh = (d->height - k + 1) / 2, ow = (d->width - k + 1) / 2;

	for (uint32_t o = 0; o < d->c_out; o++)
		for (uint32_t r = 0; r < oh; r++)
			for (uint32_t c = 0; c < ow; c++)
				*y++ = conv_pool_one(d, o, k, x, r, c);
}

/* Out of line, so the MAC loops have the whole register file; the project's CNNs' 2x2 kernel
 * gets its own copy, whose kernel loops unroll. */
static __attribute__((noinline)) void conv_pool_k2(const struct layer *d, const uint8_t *x,
						   uint8_t *y)
{
	conv_pool(d, 2, x, y);
}

static __attribute__((noinline)) void conv_pool_any(const struct layer *d, const uint8_t *x,
						    uint8_t *y)
{
	conv_pool(d, d->kernel, x, y);
}

/* A conv without a pool: one accumulator per output, kernel rows as contiguous runs. */
static __attribute__((noinline)) void conv(const struct layer *d, const uint8_t *x, uint8_t *y,
					   int32_t *logits)
{
	uint32_t W = d->width, k = d->kernel, plane = d->height * W, wsize = d->c_in * k * k;
	uint32_t oh = d->height - k + 1, ow = W - k + 1;

	for (uint32_t o = 0; o < d->c_out; o++)
		for (uint32_t r = 0; r < oh; r++)
			for (uint32_t c = 0; c < ow; c++) {
				const int8_t *w = d->weights + o * wsize;
				int32_t acc = d->bias[o];
				for (uint32_t ci = 0; ci < d->c_in; ci++) {
					const uint8_t *p = x + ci * plane + r * W + c;
					for (uint32_t ky = 0; ky < k; ky++, p += W, w += k)
						for (uint32_t kx = 0; kx < k; kx++)
							acc += w[kx] * p[kx];
				}
				put(d, o, (o * oh + r) * ow + c, acc, y, logits);
			}
}

uint32_t infer_optimised(const uint32_t *model, const uint8_t *x, int32_t *logits)
{
	uint32_t n_layers = model[0];

	for (uint32_t l = 0; l < n_layers; l++) {
		const struct layer *d = (const struct layer *)(model + 1) + l;
		uint32_t k = d->kernel, last = d->flags & FLAG_LOGITS;
		uint8_t *y = cpu_act[l & 1];

		if (k == d->width && k == d->height)
			dense(d, x, y, last ? logits : NULL);
		else if (!(d->flags & FLAG_POOL))
			conv(d, x, y, last ? logits : NULL);
		else if (k == 2)
			conv_pool_k2(d, x, y);
		else
			conv_pool_any(d, x, y);
		if (last)
			return d->c_out * (d->height - k + 1) * (d->width - k + 1);
		x = y;
	}
	return 0;
}
