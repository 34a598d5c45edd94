// One registration function per CPU op family (lib/kernels/<family>.cpp).
#pragma once

#include "frugal/kernel.h"

namespace frugal::kernels {

void register_elementwise_kernels(KernelRegistry& r);  // arithmetic, comparison, logic, Cast, Where
void register_activation_kernels(KernelRegistry& r);   // Relu..Gelu, Clip, Softmax, LogSoftmax
void register_matmul_kernels(KernelRegistry& r);       // MatMul, Gemm, MatMulInteger, QLinearMatMul
void register_conv_kernels(KernelRegistry& r);         // Conv, ConvTranspose, ConvInteger, QLinearConv
void register_pool_kernels(KernelRegistry& r);         // MaxPool, AveragePool, Global*Pool
void register_norm_kernels(KernelRegistry& r);         // BatchNorm, LayerNorm, InstanceNorm
void register_reduce_kernels(KernelRegistry& r);       // Reduce*, ArgMax/ArgMin, TopK
void register_shape_kernels(KernelRegistry& r);        // data movement and shape ops, Resize
void register_quant_kernels(KernelRegistry& r);        // QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear
void register_rnn_kernels(KernelRegistry& r);          // LSTM, GRU

}  // namespace frugal::kernels
