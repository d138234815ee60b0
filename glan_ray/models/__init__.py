"""The supervised models: L-RTG and HRM (GLAN), ISP and AM (KLAN). Plain nn.Modules, no Ray."""
