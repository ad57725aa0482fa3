// im2col and col2im over NCHW tensors (layout specified on Backend::im2col in cryptgpu-ring).

struct Window {
    u64 n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow;
};

// One thread per element of the [c*kh*kw, n*oh*ow] column matrix.
extern "C" __global__ void im2col(const u64* __restrict__ x, u64* __restrict__ cols, Window g) {
    u64 ncols = g.n * g.oh * g.ow;
    u64 total = g.c * g.kh * g.kw * ncols;
    GRID_STRIDE_LOOP(i, total) {
        u64 r = i / ncols, col = i - r * ncols;
        u64 c = r / (g.kh * g.kw), ij = r - c * g.kh * g.kw, ki = ij / g.kw, kj = ij - ki * g.kw;
        u64 b = col / (g.oh * g.ow), yx = col - b * g.oh * g.ow, oy = yx / g.ow, ox = yx - oy * g.ow;
        i64 iy = (i64)(oy * g.sh + ki) - (i64)g.ph;
        i64 ix = (i64)(ox * g.sw + kj) - (i64)g.pw;
        u64 v = 0;
        if (iy >= 0 && ix >= 0 && iy < (i64)g.h && ix < (i64)g.w) v = x[((b * g.c + c) * g.h + (u64)iy) * g.w + (u64)ix];
        cols[i] = v;
    }
}

// One thread per input element: gathers every column entry that im2col read from it (no atomics,
// so the sum order is fixed and the result exact).
extern "C" __global__ void col2im(const u64* __restrict__ cols, u64* __restrict__ x, Window g) {
    u64 ncols = g.n * g.oh * g.ow;
    u64 total = g.n * g.c * g.h * g.w;
    GRID_STRIDE_LOOP(i, total) {
        u64 xx = i % g.w, t = i / g.w, yy = t % g.h;
        t /= g.h;
        u64 c = t % g.c, b = t / g.c;
        u64 acc = 0;
        for (u64 ki = 0; ki < g.kh; ++ki) {
            i64 ny = (i64)(yy + g.ph) - (i64)ki;
            if (ny < 0 || ny % (i64)g.sh != 0) continue;
            u64 oy = (u64)ny / g.sh;
            if (oy >= g.oh) continue;
            for (u64 kj = 0; kj < g.kw; ++kj) {
                i64 nx = (i64)(xx + g.pw) - (i64)kj;
                if (nx < 0 || nx % (i64)g.sw != 0) continue;
                u64 ox = (u64)nx / g.sw;
                if (ox >= g.ow) continue;
                u64 r = (c * g.kh + ki) * g.kw + kj;
                acc += cols[r * ncols + (b * g.oh + oy) * g.ow + ox];
            }
        }
        x[i] = acc;
    }
}
