// hostemu.cpp runs the CUDA kernels of package kernels on the host, one
// thread at a time, so that their math can be checked against the CPU
// device on a machine without a GPU (hostemu_test.go). Every kernel loops
// grid-stride, so one block of one thread covers all the work; the per-row
// kernels (bias_backward, softmax_xent) are called once per block index.
// The shim below maps the CUDA keywords and intrinsics the kernels use to
// C++; compile with -ffp-contract=off, as NVRTC runs with --fmad=false.
//
// Inputs and outputs are raw little-endian float32 files in the working
// directory, written and read by hostemu_test.go with the shapes below.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <vector>
#include <string>
#include <algorithm>
using std::min; using std::max;
struct D3 { unsigned x, y, z; };
static D3 blockIdx{0,0,0}, threadIdx{0,0,0}, blockDim{1,1,1}, gridDim{1,1,1};
#define __global__
#define __device__
#define __shared__ static
static void __syncthreads() {}
static float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static float __fsub_rn(float a, float b) { return a - b; }
static float __fadd_rn(float a, float b) { return a + b; }
#include "add.cu"
#include "augment.cu"
#include "bias.cu"
#include "concat.cu"
#include "dropout.cu"
#include "lrn.cu"
#include "pool.cu"
#include "relu.cu"
#include "sgd.cu"
#include "softmax.cu"
#include "tanh.cu"

static std::vector<float> rd(const char* f, size_t n) { std::vector<float> v(n); FILE* p = fopen(f, "rb"); fread(v.data(), 4, n, p); fclose(p); return v; }
static void wr(const char* f, const std::vector<float>& v) { FILE* p = fopen(f, "wb"); fwrite(v.data(), 4, v.size(), p); fclose(p); }

int main() {
	// LRN: N=2 C=7 H=3 W=5 size 5
	{ int N=2,C=7,hw=15; size_t n=N*C*hw; auto x=rd("lrn_x",n), dy=rd("lrn_dy",n); std::vector<float> y(n), dx(n);
	  lrn_forward(N,C,hw,5,1e-2f,0.75f,2.0f,y.data(),x.data()); lrn_backward(N,C,hw,5,1e-2f,0.75f,2.0f,dx.data(),dy.data(),x.data(),y.data());
	  wr("lrn_y",y); wr("lrn_dx",dx); }
	// LRN with a large alpha and a small window: N=1 C=6 H=2 W=3 size 3
	{ int N=1,C=6,hw=6; size_t n=N*C*hw; auto x=rd("lrn2_x",n), dy=rd("lrn2_dy",n); std::vector<float> y(n), dx(n);
	  lrn_forward(N,C,hw,3,0.5f,0.75f,1.0f,y.data(),x.data()); lrn_backward(N,C,hw,3,0.5f,0.75f,1.0f,dx.data(),dy.data(),x.data(),y.data());
	  wr("lrn2_y",y); wr("lrn2_dx",dx); }
	// Concat of (3, 4) and (3, 2) into (3, 6), then split back
	{ int N=3; auto a=rd("cat_a",N*4), b=rd("cat_b",N*2); std::vector<float> d(N*6), a2(N*4), b2(N*2);
	  concat_rows(N,4,6,0,d.data(),a.data()); concat_rows(N,2,6,4,d.data(),b.data());
	  split_rows(N,4,6,0,a2.data(),d.data()); split_rows(N,2,6,4,b2.data(),d.data());
	  wr("cat_d",d); wr("cat_a2",a2); wr("cat_b2",b2); }
	// ReLU, tanh and their backward passes, n=50
	{ int n=50; auto x=rd("act_x",n), dy=rd("act_dy",n); std::vector<float> r(n), dr(n), t(n), dt(n);
	  relu_forward(n,r.data(),x.data()); relu_backward(n,dr.data(),dy.data(),r.data());
	  tanh_forward(n,t.data(),x.data()); tanh_backward(n,dt.data(),dy.data(),t.data());
	  wr("relu_y",r); wr("relu_dx",dr); wr("tanh_y",t); wr("tanh_dx",dt); }
	// Pool: planes 3, H=W=9, size 3 stride 2 → P=Q=4
	{ int pl=3,H=9,W=9,P=4,Q=4; auto x=rd("pool_x",pl*H*W), dy=rd("pool_dy",pl*P*Q); std::vector<float> y(pl*P*Q), dx(pl*H*W);
	  maxpool_forward(pl,H,W,P,Q,3,2,y.data(),x.data()); maxpool_backward(pl,H,W,P,Q,3,2,dx.data(),dy.data(),x.data());
	  wr("pool_y",y); wr("pool_dx",dx); }
	// Dropout n=1000 p=0.3 seed 12345678901
	{ int n=1000; auto x=rd("drop_x",n); std::vector<float> y(n), m(n); float p=0.3f; float sc=1.0f/(1.0f-p);
	  dropout_forward(n,p,sc,12345678901ull,y.data(),m.data(),x.data()); wr("drop_y",y); wr("drop_m",m); }
	// SGD n=100
	{ int n=100; auto w=rd("sgd_w",n), v=rd("sgd_v",n), g=rd("sgd_g",n); float lr=0.01f, mom=0.9f, wd=5e-4f; float decay=wd*lr;
	  sgd_update(n,lr,mom,decay,w.data(),v.data(),g.data()); wr("sgd_w2",w); wr("sgd_v2",v); }
	// Softmax N=3 classes=10
	{ int N=3,K=10; auto z=rd("sm_z",N*K), l=rd("sm_l",N); std::vector<float> p(N*K), loss(N), dz(N*K);
	  for (unsigned b=0;b<(unsigned)N;b++){blockIdx.x=b; softmax_xent(N,K,p.data(),loss.data(),z.data(),l.data());} blockIdx.x=0;
	  softmax_xent_backward(N,K,dz.data(),p.data(),l.data()); wr("sm_p",p); wr("sm_loss",loss); wr("sm_dz",dz); }
	// Bias backward N=2 C=4 inner=6, add
	{ int N=2,C=4,in=6; auto dy=rd("bias_dy",N*C*in), b=rd("bias_b",C); std::vector<float> db(C), y=dy;
	  for (unsigned c=0;c<(unsigned)C;c++){blockIdx.x=c; bias_backward(N,C,in,db.data(),dy.data());} blockIdx.x=0;
	  bias_add(N,C,in,y.data(),b.data()); wr("bias_db",db); wr("bias_y",y); }
	// Augment N=2 C=3 size=8 crop=5
	{ int N=2,C=3,S=8,Cr=5; int nb=N*C*S*S; auto src=rd("aug_src",(nb+3)/4), mean=rd("aug_mean",C*S*S), par=rd("aug_par",N*(3+C));
	  std::vector<float> dst(N*C*Cr*Cr); augment(N,C,S,Cr,dst.data(),(const unsigned int*)src.data(),mean.data(),par.data()); wr("aug_dst",dst); }
	return 0;
}
