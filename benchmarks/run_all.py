"""Every benchmark in turn; each prints its figure and its ratio to the baseline or target it names."""
import cpu_speed
import faults
import overhead
import pipeline
import serving
import transfer
import time_to_accuracy

if __name__ == "__main__":
    time_to_accuracy.main()
    overhead.main()
    transfer.main()
    pipeline.main()
    serving.main()
    faults.main()
    cpu_speed.main()
    import torch

    if torch.cuda.is_available():
        import gpu

        gpu.main()
