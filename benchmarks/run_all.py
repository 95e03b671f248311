"""`make bench`: every benchmark script, one after the other."""

import bench_cg_iterations
import bench_deq
import bench_fastmri_maps
import bench_floor_ratios
import bench_implicit_memory
import bench_modl_memory
import bench_per_sample

if __name__ == "__main__":
    bench_floor_ratios.main()
    bench_implicit_memory.main()
    bench_deq.main()
    bench_cg_iterations.main()
    bench_modl_memory.main()
    bench_per_sample.main()
    bench_fastmri_maps.main()
