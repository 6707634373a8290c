"""The data room: the data module (an assembler), experience (collector, online replay, snapshot), collectors, replay."""
