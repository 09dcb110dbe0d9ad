/*
 * The CPU model blob (host/cpu_model.py:pack_cpu_model) as the firmware's two CPU inferences
 * read it: main.c's plain one and infer_optimised.c's.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "mailbox.h"

/* One record of the blob: a k x k valid stride-1 conv over a (c_in, height, width) tensor
 * giving c_out channels, optionally 2x2/2 max-pooled; a dense layer is the 1x1 conv over
 * (n_in, 1, 1). */
struct layer {
	uint32_t c_in, height, width, kernel, c_out;
	uint32_t flags;                 /* FLAG_LOGITS, FLAG_POOL */
	const int8_t *weights;          /* [c_out][c_in][kernel][kernel] */
	const int32_t *bias;            /* [c_out] */
	const uint32_t *requant;        /* [c_out] REQUANT words: mult, shift */
};

#define FIELD_AT(f, i) _Static_assert(offsetof(struct layer, f) == 4 * (i), "layer record: " #f)
FIELD_AT(c_in, LAYER_C_IN); FIELD_AT(height, LAYER_HEIGHT); FIELD_AT(width, LAYER_WIDTH);
FIELD_AT(kernel, LAYER_KERNEL); FIELD_AT(c_out, LAYER_C_OUT); FIELD_AT(flags, LAYER_FLAGS);
FIELD_AT(weights, LAYER_WEIGHTS); FIELD_AT(bias, LAYER_BIAS); FIELD_AT(requant, LAYER_REQUANT);
_Static_assert(sizeof(struct layer) == 4 * LAYER_WORDS, "layer record size");

/* Hidden activations, (C, H, W) channel-major; layer l writes cpu_act[l & 1]. */
extern uint8_t cpu_act[2][MAX_WIDTH];

/* fixedpoint.requantize: round half up, ReLU, saturate to uint8. */
static inline uint8_t requantize(int32_t acc, uint32_t rq)
{
	uint32_t mult = FIELD_GET(rq, REQUANT_MULT), shift = FIELD_GET(rq, REQUANT_SHIFT);
	int64_t y = ((int64_t)acc * mult + ((int64_t)1 << (shift - 1))) >> shift;
	return y < 0 ? 0 : y > 255 ? 255 : (uint8_t)y;
}

/* One image through a model that passed model_ok(); writes the logits, returns their count. */
typedef uint32_t infer_fn(const uint32_t *model, const uint8_t *x, int32_t *logits);
infer_fn infer_plain, infer_optimised;
