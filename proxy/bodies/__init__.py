"""Client request bodies: buffered, spooled and streamed, under the memory budget."""
