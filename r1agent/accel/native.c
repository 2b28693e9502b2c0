/* Fused CPU kernels for small models (see native.py, which compiles and loads this file).
 *
 * For a model of a few million parameters every tensor op costs more in dispatch and memory
 * traffic than in arithmetic; these loops do in one pass what takes several ops in torch.
 * All tensors are float32 and contiguous; parallel over rows with OpenMP (the runtime torch
 * itself uses, so both share one thread pool).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* exp(x) for float32 within ~2 ulp (Cephes' range reduction and polynomial); written as
 * plain arithmetic so that the compiler vectorises the loops calling it. Inputs below
 * -87.3 give exp(-87.3) (1.2e-38), above 88.7 give exp(88.7); NaN stays NaN. */
static inline float fast_exp(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.7f ? 88.7f : x;
    float k = floorf(x * 1.44269504088896341f + 0.5f);
    float r = fmaf(k, -0.693359375f, x);
    r = fmaf(k, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float y = fmaf(p, r * r, r) + 1.0f;
    union { float f; int32_t i; } scale;
    scale.i = ((int32_t)k + 127) << 23;
    return y * scale.f;
}

/* One decoding step of attention for B rows, all KV heads, with the prompt's keys and values
 * stored once per distinct prompt (a GRPO group repeats its prompt G times):
 *   qkv  (B, (H + 2 Hkv) D): the fused projection's output, query heads (already scaled by
 *        the attention scaling) then key heads then value heads; query and key heads hold
 *        their rotary pairs interleaved (0, D/2, 1, D/2 + 1, ...);
 *   cos, sin (B, D/2): the rotary angles of each row's position (times the rope scaling);
 *   kp (U, Hkv, D, P) prompt keys transposed, vp (U, Hkv, P, D) prompt values, pbias (U, P)
 *        their additive mask (0, or -inf on padding); row b continues prompt group[b];
 *   kr (B, Hkv, D, R) and vr (B, Hkv, R, D): each row's own keys and values; this step's
 *        rotated key and value are written at column t, then columns 0..t are attended;
 *   out (B, H D): the attention output, heads in order (head j reads KV head j / rep).
 */
void decode_attention(int B, int Hkv, int rep, int D, int P, int R, int t, const float *qkv,
                      const float *cos_, const float *sin_, const float *kp, const float *vp,
                      const float *pbias, const int64_t *group, float *kr, float *vr,
                      float *out) {
    const int H = Hkv * rep, half = D / 2, n = P + t + 1;
#pragma omp parallel
    {
        float *scores = malloc(sizeof(float) * (size_t)n);
        float *q = malloc(sizeof(float) * (size_t)rep * D);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * Hkv; bh++) {
            const int b = bh / Hkv, h = bh % Hkv;
            const int64_t gh = group[b] * Hkv + h;
            const float *row = qkv + (size_t)b * (H + 2 * Hkv) * D;
            const float *c = cos_ + (size_t)b * half, *s = sin_ + (size_t)b * half;
            const float *k = row + (size_t)(H + h) * D, *v = row + (size_t)(H + Hkv + h) * D;
            const float *Kp = kp + gh * D * P, *Vp = vp + gh * P * D, *mask = pbias + group[b] * P;
            float *Kr = kr + (size_t)bh * D * R, *Vr = vr + (size_t)bh * R * D;
            for (int i = 0; i < half; i++) {
                Kr[(size_t)(2 * i) * R + t] = k[2 * i] * c[i] - k[2 * i + 1] * s[i];
                Kr[(size_t)(2 * i + 1) * R + t] = k[2 * i] * s[i] + k[2 * i + 1] * c[i];
            }
            memcpy(Vr + (size_t)t * D, v, sizeof(float) * D);
            for (int r = 0; r < rep; r++) {
                const float *qh = row + (size_t)(h * rep + r) * D;
                for (int i = 0; i < half; i++) {
                    q[r * D + 2 * i] = qh[2 * i] * c[i] - qh[2 * i + 1] * s[i];
                    q[r * D + 2 * i + 1] = qh[2 * i] * s[i] + qh[2 * i + 1] * c[i];
                }
            }
            for (int r = 0; r < rep; r++) {
                const float *qr = q + r * D;
                float *sp = scores, *sr = scores + P;
                memcpy(sp, mask, sizeof(float) * P);
                memset(sr, 0, sizeof(float) * (t + 1));
                for (int d = 0; d < D; d++) {
                    const float qd = qr[d], *Kd = Kp + (size_t)d * P, *Rd = Kr + (size_t)d * R;
                    for (int w = 0; w < P; w++) sp[w] += qd * Kd[w];
                    for (int w = 0; w <= t; w++) sr[w] += qd * Rd[w];
                }
                float m = -INFINITY;
                for (int w = 0; w < n; w++) m = scores[w] > m ? scores[w] : m;
                float total = 0.0f;
#pragma omp simd reduction(+ : total)
                for (int w = 0; w < n; w++) {
                    const float e = w < P && mask[w] == -INFINITY ? 0.0f : fast_exp(scores[w] - m);
                    scores[w] = e;
                    total += e;
                }
                const float inv = 1.0f / total;
                float *o = out + (size_t)b * H * D + (size_t)(h * rep + r) * D;
                for (int d = 0; d < D; d++) o[d] = 0.0f;
                for (int w = 0; w < P; w++) {
                    const float e = sp[w] * inv, *Vw = Vp + (size_t)w * D;
                    for (int d = 0; d < D; d++) o[d] += e * Vw[d];
                }
                for (int w = 0; w <= t; w++) {
                    const float e = sr[w] * inv, *Vw = Vr + (size_t)w * D;
                    for (int d = 0; d < D; d++) o[d] += e * Vw[d];
                }
            }
        }
        free(scores);
        free(q);
    }
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

/* SwiGLU, out (N, I) = silu(gate) * up, with row i of gate and up at i * stride: separate
 * contiguous tensors (stride I) or the halves of fused gate/up rows (stride 2I). */
void swiglu_forward(int64_t N, int I, int64_t stride, const float *gate, const float *up,
                    float *out) {
#pragma omp parallel for schedule(static) if (N * I > 16384)
    for (int64_t i = 0; i < N; i++) {
        const float *restrict g = gate + i * stride, *restrict u = up + i * stride;
        float *restrict o = out + i * I;
        for (int j = 0; j < I; j++) o[j] = g[j] * sigmoid(g[j]) * u[j];
    }
}

/* Its gradient: d gate = grad * up * s * (1 + gate (1 - s)) with s = sigmoid(gate) and
 * d up = grad * silu(gate). */
void swiglu_backward(int64_t n, const float *restrict gate, const float *restrict up,
                     const float *restrict grad, float *restrict grad_gate,
                     float *restrict grad_up) {
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; j++) {
        const float s = sigmoid(gate[j]);
        grad_up[j] = grad[j] * gate[j] * s;
        grad_gate[j] = grad[j] * up[j] * s * (1.0f + gate[j] * (1.0f - s));
    }
}

/* RMSNorm of x (N, H): out = x / sqrt(mean(x^2) + eps) * weight; rstd (N,) receives each
 * row's 1 / sqrt(mean(x^2) + eps) for the backward pass (may be NULL). */
void rms_norm_forward(int64_t N, int H, const float *restrict x, const float *restrict weight,
                      float eps, float *restrict out, float *restrict rstd) {
#pragma omp parallel for schedule(static) if (N * H > 16384)
    for (int64_t i = 0; i < N; i++) {
        const float *xi = x + i * H;
        float *oi = out + i * H;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int j = 0; j < H; j++) ss += xi[j] * xi[j];
        const float r = 1.0f / sqrtf(ss / (float)H + eps);
        for (int j = 0; j < H; j++) oi[j] = xi[j] * r * weight[j];
        if (rstd) rstd[i] = r;
    }
}

/* Its gradient: with xhat = x * rstd and g = grad * weight,
 * d x = rstd * (g - xhat * mean(g * xhat)) per row; d weight = sum over rows of grad * xhat
 * (accumulated into grad_weight, which the caller zeroes). */
void rms_norm_backward(int64_t N, int H, const float *restrict x, const float *restrict weight,
                       const float *restrict rstd, const float *restrict grad,
                       float *restrict grad_x, float *restrict grad_weight) {
#pragma omp parallel
    {
        float *dw = calloc((size_t)H, sizeof(float));
#pragma omp for schedule(static)
        for (int64_t i = 0; i < N; i++) {
            const float *xi = x + i * H, *gi = grad + i * H;
            float *dxi = grad_x + i * H;
            const float r = rstd[i];
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j < H; j++) {
                dot += gi[j] * weight[j] * xi[j];
                dw[j] += gi[j] * xi[j] * r;
            }
            const float c = dot * r * r / (float)H;
            for (int j = 0; j < H; j++) dxi[j] = r * (gi[j] * weight[j] - xi[j] * c);
        }
#pragma omp critical
        for (int j = 0; j < H; j++) grad_weight[j] += dw[j];
        free(dw);
    }
}

/* Rotary embedding (rotate-half form) fused with the head transpose: x (B, T, H, D), as a
 * projection leaves it, to out (B, H, T, D), as attention wants it:
 *   out[.., i] = x[i] cos[i] - x[i + D/2] sin[i],  out[.., i + D/2] = x[i + D/2] cos[i] + x[i] sin[i]
 * with row (b, t)'s angles at cos[(b T + t) * stride + i] and sin[...] (i < D/2).
 * inverse != 0 is its gradient: the inverse rotation (sin negated) from (B, H, T, D) back to
 * (B, T, H, D). */
void rope(int64_t B, int T, int H, int D, const float *restrict src, const float *restrict cos_,
          const float *restrict sin_, int64_t stride, float *restrict dst, int inverse) {
    const int half = D / 2;
    const float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static) if (B * T * H * D > 16384)
    for (int64_t bt = 0; bt < B * T; bt++) {
        const int64_t b = bt / T, t = bt % T;
        const float *c = cos_ + bt * stride, *s = sin_ + bt * stride;
        for (int h = 0; h < H; h++) {
            const int64_t by_time = (bt * H + h) * D, by_head = ((b * H + h) * T + t) * D;
            const float *x = src + (inverse ? by_head : by_time);
            float *o = dst + (inverse ? by_time : by_head);
            for (int i = 0; i < half; i++) {
                const float si = sign * s[i];
                o[i] = x[i] * c[i] - x[i + half] * si;
                o[i + half] = x[i + half] * c[i] + x[i] * si;
            }
        }
    }
}

/* A linear layer for few rows, out (M, N) = x (M, K) @ w (N, K)^T (+ bias (N,), may be NULL):
 * a decoding step multiplies a handful of rows by every weight matrix, so the time goes into
 * reading the weights. Each tile of LIN_NR weight rows is read from memory once and used for
 * LIN_MR rows of x at a time (x stays in cache), with the tile two ahead prefetched; the
 * threads split the weight rows. Sums run in a different order than a BLAS product, so
 * results agree with it up to float rounding. */
typedef float lin_vec __attribute__((vector_size(64)));
#define LIN_MR 8
#define LIN_NR 3

static inline lin_vec lin_load(const float *p) {
    lin_vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static void linear_tile(int M, int K, int nr, const float *restrict x, const float *restrict w,
                        const float *restrict bias, float *restrict out, int64_t ldo) {
    lin_vec acc[LIN_MR][LIN_NR];
    memset(acc, 0, sizeof acc);
    const int lanes = (int)(sizeof(lin_vec) / sizeof(float));
    int k = 0;
    for (; k + lanes <= K; k += lanes) {
        lin_vec wv[LIN_NR];
        for (int j = 0; j < LIN_NR; j++) {
            __builtin_prefetch(w + (size_t)(j + 2 * LIN_NR) * K + k);
            wv[j] = j < nr ? lin_load(w + (size_t)j * K + k) : (lin_vec){0};
        }
        for (int m = 0; m < LIN_MR && m < M; m++) {
            const lin_vec xv = lin_load(x + (size_t)m * K + k);
            for (int j = 0; j < LIN_NR; j++) acc[m][j] += xv * wv[j];
        }
    }
    for (int m = 0; m < M; m++)
        for (int j = 0; j < nr; j++) {
            float s = 0.0f;
            for (int l = 0; l < lanes; l++) s += acc[m][j][l];
            for (int kk = k; kk < K; kk++) s += x[(size_t)m * K + kk] * w[(size_t)j * K + kk];
            out[(size_t)m * ldo + j] = bias ? s + bias[j] : s;
        }
}

void linear_rows(int M, int K, int64_t N, const float *x, const float *w, const float *bias,
                 float *out) {
    const int64_t tiles = (N + LIN_NR - 1) / LIN_NR;
#pragma omp parallel for schedule(static) if (N * K > 65536)
    for (int64_t tile = 0; tile < tiles; tile++) {
        const int64_t n = tile * LIN_NR;
        const int nr = N - n < LIN_NR ? (int)(N - n) : LIN_NR;
        for (int m0 = 0; m0 < M; m0 += LIN_MR)
            linear_tile(M - m0 < LIN_MR ? M - m0 : LIN_MR, K, nr, x + (size_t)m0 * K,
                        w + (size_t)n * K, bias ? bias + n : NULL, out + (size_t)m0 * N + n, N);
    }
}
