// Matmuls through BLAS (row-major sgemm). Weights are [N, K] (PyTorch Linear).
#include <cblas.h>

#include "kernels/cpu/cpu_ops.h"

// Up to this many rows, a matmul is that many matrix-vector products.
#define MATMUL_GEMV_ROWS 4

void cpu_matmul_forward(void *out_, const void *inp_, const void *weight_, const void *bias_, int M, int K, int N) {
    float *out = out_;
    const float *inp = inp_, *weight = weight_, *bias = bias_;
    // out[M,N] = inp[M,K] @ weight[N,K]^T. A few rows (decode steps) go
    // through gemv, one row at a time: sgemm would copy (pack) all of the
    // weight for each call, as much work as the product itself at M = 1.
    if (M <= MATMUL_GEMV_ROWS) {
        for (int m = 0; m < M; m++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, weight, K, inp + (size_t)m * K, 1, 0.0f,
                        out + (size_t)m * N, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, weight, K, 0.0f, out, N);
    }
    if (!bias) return;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) out[(size_t)m * N + n] += bias[n];
}

void cpu_matmul_backward(void *dinp_, void *dweight_, void *dbias_, const void *dout_, const void *inp_,
                         const void *weight_, int M, int K, int N) {
    float *dinp = dinp_, *dweight = dweight_, *dbias = dbias_;  // fp32 gradients (grad_size 4)
    const float *dout = dout_, *inp = inp_, *weight = weight_;
    // dinp[M,K] = dout[M,N] @ weight[N,K]
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, weight, K, 0.0f, dinp, K);
    // dweight[N,K] += dout[M,N]^T @ inp[M,K]
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dweight, K);
    // dbias[N] += column sums, each column summed in row order (deterministic)
    if (dbias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            double s = 0.0;
            for (int m = 0; m < M; m++) s += dout[(size_t)m * N + n];
            dbias[n] += (float)s;
        }
    }
}
